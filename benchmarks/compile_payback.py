"""Does ``torch.compile`` pay back within one image (issue 22)? Inference of a shipped
network on the interpolated input of one image, in the layout the package infers in,
uncompiled against compiled: the compile time (with its first call) is compared with
what compiling saves per inference. Run it with an empty inductor cache
(``TORCHINDUCTOR_CACHE_DIR``) to time a user's first compile.

    python -m benchmarks.compile_payback --side 256 --threads 2 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from napari_mzsr.core.adaptation import prepare, prepare_net
from napari_mzsr.io.model_file import load_model

from .machine import add_threads_option, apply_threads, machine_description, median_seconds
from .report import command_line, fmt, markdown_table, write_results


@torch.no_grad()
def forward(net: torch.nn.Module, x: torch.Tensor) -> None:
    net(x)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compile_payback")
    parser.add_argument("--side", type=int, default=256, help="LR side; inferred at x2")
    parser.add_argument("--model", default="direct-x2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="compile_payback_cpu")
    add_threads_option(parser)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    apply_threads(args)
    net = load_model(args.model).network("cpu").eval()
    prepare_net(net)
    x = prepare(torch.rand(1, net.channels, 2 * args.side, 2 * args.side))
    eager = median_seconds(lambda: forward(net, x), args.repeats)
    start = time.perf_counter()
    compiled = torch.compile(net)
    first = median_seconds(lambda: forward(compiled, x), 1)
    compile_s = time.perf_counter() - start
    fast = median_seconds(lambda: forward(compiled, x), args.repeats)
    saved = eager - fast
    payback = compile_s / saved if saved > 0 else None
    machine = machine_description(torch.device("cpu"))
    rows = [[f"{args.side}x{args.side} -> x2", fmt(eager), fmt(compile_s, 1), fmt(fast)]]
    rows[0].append(fmt(payback, 1, missing="never"))
    lines = [
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, "
        f"{machine['torch_threads']} thread(s), 1-min load {machine.get('load_average_1min')}.",
        "",
        *markdown_table(
            ["input", "uncompiled s", "compile + first call s", "compiled s", "images to pay back"],
            rows,
        ),
    ]
    payload = {"machine": machine, "eager_s": eager, "compile_s": compile_s, "first_s": first}
    payload |= {"compiled_s": fast, "images_to_pay_back": payback, "model": args.model}
    md, _ = write_results(
        args.out, args.name, "torch.compile: does it pay back within one image?",
        command_line("benchmarks.compile_payback", argv), lines, payload,
    )  # fmt: skip
    print(md.read_text())
    return md


if __name__ == "__main__":
    main()
