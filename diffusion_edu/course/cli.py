"""The ``diffusion-edu`` command: ``pretrain NAME`` runs a checkpoint recipe (also under ``torchrun``, one process
per GPU), ``bench`` writes the benchmark report; for teachers, ``grade`` grades a class's exercise notebooks into
a CSV; for authors, ``exercises`` generates the hand-outs from the solutions and ``stamp`` the Colab cells."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from .. import pretrained

    parser = argparse.ArgumentParser(prog="diffusion-edu", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pretrain", help="train a checkpoint from its recipe and record it in the manifest")
    p.add_argument("names", nargs="+", metavar="NAME", help=f"one of {', '.join(sorted(pretrained.RECIPES))}, or all")
    p.add_argument("--out", default=str(pretrained.WEIGHTS), help="folder for the weights (default: the package's)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps"),
                   help="where to train (default cpu, where the shipped checkpoints were made); under torchrun "
                        "each process takes cuda:LOCAL_RANK (nccl) or a CPU (gloo) and a share of the recipe's batch")
    b = sub.add_parser("bench", help="measure quality and speed, write docs/BENCHMARKS.md and its JSON")
    b.add_argument("--quick", action="store_true", help="a smoke run of under a minute (small counts)")
    b.add_argument("--out", default="docs/BENCHMARKS.md", help="the Markdown report; the JSON goes beside it")
    b.add_argument("--only", nargs="+", metavar="SECTION",
                   help="re-measure only these sections (uncond, ddpm1000, cond, guidance, training_curve, peer, toys, memory_mib, "
                        "notebooks, grading, browser, samplers) and keep the rest from the JSON beside the report")
    e = sub.add_parser("exercises", help="generate exercises/ from solutions/ (authors)")
    e.add_argument("--check", action="store_true", help="write nothing; fail if any exercise differs")
    sub.add_parser("stamp", help="rewrite every notebook's Colab badge and set-up cell from pyproject.toml")
    g = sub.add_parser("grade", help="grade submitted exercise notebooks, one fresh kernel each, into a CSV")
    g.add_argument("submissions", nargs="+", metavar="SUBMISSION", help="notebooks, or folders holding them")
    g.add_argument("--assignment", required=True, metavar="NN", help="the chapter handed out: 01, 02, … or its name")
    g.add_argument("--out", required=True, metavar="CSV", help="the grades, one row per submission")
    g.add_argument("--jobs", type=int, default=1, metavar="N", help="submissions graded in parallel (default 1)")
    g.add_argument("--exercises", metavar="DIR", help="the official hand-outs (default: the course's exercises/)")
    g.add_argument("--cell-timeout", type=float, default=120, metavar="S", help="seconds per cell (default 120)")
    g.add_argument("--notebook-timeout", type=float, default=900, metavar="S",
                   help="seconds per notebook (default 900)")
    g.add_argument("--memory-mb", type=int, default=4096, metavar="MB",
                   help="cap on each kernel's address space, i.e. virtual memory, which with torch is ~1.5 GB above "
                        "the resident memory the CSV reports (default 4096)")
    g.add_argument("--full", action="store_true", help="run the notebooks in full mode, not fast mode "
                   "(the checks are the same; the demos take longer)")
    g.add_argument("--feedback", metavar="DIR", help="also write each executed notebook there, for the learner")
    args = parser.parse_args(argv)

    if args.command == "pretrain":
        names = sorted(pretrained.RECIPES) if args.names == ["all"] else args.names
        unknown = [n for n in names if n not in pretrained.RECIPES]
        if unknown:
            parser.error(f"unknown recipe {unknown[0]!r}; choose from {sorted(pretrained.RECIPES)} or all")
        import torch

        from ..train import distributed

        if args.device == "cuda" and not torch.cuda.is_available():
            parser.error("--device cuda, but this PyTorch sees no CUDA GPU")
        with distributed(args.device) as device:
            for name in names:
                entry = pretrained.pretrain(name, args.out, device)
                if entry is not None:  # rank 0, the one that writes
                    print(f"{name}: {entry['file']} in {entry['recipe_seconds']} s, sha256 {entry['sha256'][:12]}…")
    elif args.command == "bench":
        from . import bench, report

        try:
            bench.check_sections(args.only, args.quick)  # before hours of measuring, not after
        except ValueError as err:
            parser.error(f"--only: {err}")
        report.run(quick=args.quick, out=args.out, only=args.only)
    elif args.command == "exercises":
        from . import authoring

        drifted = authoring.exercises(check=args.check)
        verb = "differ from their solutions" if args.check else "written"
        print(f"{len(drifted)} exercise notebook(s) {verb}: {', '.join(drifted) or 'none'}")
        return 1 if args.check and drifted else 0
    elif args.command == "grade":
        from collections import Counter

        from . import grade

        try:
            limits = grade.Limits(args.cell_timeout, args.notebook_timeout, args.memory_mb, fast=not args.full)
            rows = grade.grade(args.submissions, args.assignment, args.out, jobs=args.jobs, limits=limits,
                               exercises=args.exercises, feedback=args.feedback)
        except (ValueError, FileNotFoundError) as err:
            parser.error(str(err))
        except KeyboardInterrupt:
            return 130
        counts = Counter(r["status"] for r in rows)
        noted = sum(bool(r.get("notes")) for r in rows)
        print(f"{len(rows)} submission(s): " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
              + f"; {noted} with notes. Grades: {args.out}")
    else:
        from . import authoring

        print("stamped:", ", ".join(authoring.stamp_all()) or "nothing changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
