#!/usr/bin/env python3
"""hnswlib reference for `cargo bench --bench index_speed`: builds an index over the same vectors
(raw float32 files written by the Rust bench), M=16, ef_construction=200, cosine space, 2 threads,
then answers the queries at each ef. Prints one JSON object: build seconds and, per ef, queries/s,
recall@1 and recall@10 against exact search (numpy matrix product).

    hnswlib_bench.py DATA.f32 QUERIES.f32 DIM EF[,EF…]
"""
import json
import sys
import time

import hnswlib
import numpy as np


def main():
    data_path, query_path, dim = sys.argv[1], sys.argv[2], int(sys.argv[3])
    efs = [int(e) for e in sys.argv[4].split(",")]
    data = np.fromfile(data_path, dtype=np.float32).reshape(-1, dim)
    queries = np.fromfile(query_path, dtype=np.float32).reshape(-1, dim)
    truth = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    index = hnswlib.Index(space="cosine", dim=dim)
    index.init_index(max_elements=len(data), M=16, ef_construction=200)
    index.set_num_threads(2)
    start = time.perf_counter()
    index.add_items(data, np.arange(len(data)))
    build = time.perf_counter() - start
    out = {"build_s": build, "ef": {}}
    for ef in efs:
        index.set_ef(max(ef, 10))
        start = time.perf_counter()
        labels, _ = index.knn_query(queries, k=10)
        secs = time.perf_counter() - start
        r1 = float(np.mean(labels[:, 0] == truth[:, 0]))
        r10 = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(labels, truth)]))
        out["ef"][str(ef)] = {"qps": len(queries) / secs, "recall1": r1, "recall10": r10}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
