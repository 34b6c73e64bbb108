"""Writes a tiny YOLO-layout ONNX detector whose output is known from its input.

The image (letterboxed, scaled to [0, 1]) is average-pooled to a G×G grid. Every cell is one
prediction: centre = the cell centre, size = the cell size (input pixels), class 0 score = the
cell's mean brightness, class 1 score = 1 − brightness (YOLOv5 adds objectness = 1).

    python tiny_yolo.py OUT.onnx {yolov5|yolov8} SIZE GRID
"""

import sys

import torch


class TinyYolo(torch.nn.Module):
    def __init__(self, layout, size, grid):
        super().__init__()
        self.layout, self.grid = layout, grid
        cell = size / grid
        centres = (torch.arange(grid, dtype=torch.float32) + 0.5) * cell
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")
        wh = torch.full((grid * grid,), cell)
        self.register_buffer("geometry", torch.stack([cx.flatten(), cy.flatten(), wh, wh]))  # 4×N

    def forward(self, x):
        b = torch.nn.functional.adaptive_avg_pool2d(x.mean(dim=1, keepdim=True), self.grid).flatten(1)  # 1×N
        rows = [self.geometry.unsqueeze(0)]
        if self.layout == "yolov5":
            rows.append(torch.ones_like(b).unsqueeze(1))
        rows += [b.unsqueeze(1), (1.0 - b).unsqueeze(1)]
        out = torch.cat(rows, dim=1)  # 1×(4[+1]+2)×N
        return out.transpose(1, 2) if self.layout == "yolov5" else out


def main():
    out, layout, size, grid = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    model = TinyYolo(layout, size, grid).eval()
    torch.onnx.export(
        model, torch.zeros(1, 3, size, size), out, dynamo=False, input_names=["images"], output_names=["output0"],
        opset_version=12,
    )


if __name__ == "__main__":
    main()
