"""``unlearnbench`` command line: run | leaderboard | list | check-method | new-method | zoo.

Bad input prints one ``unlearnbench: error: ...`` line to stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmark import UnlearnbenchError, __version__


def _methods_arg(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("--methods needs at least one name")
    return names


def _attacks_arg(text: str) -> list[str]:
    if text.strip().lower() == "none":
        return []
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("--attacks needs at least one name, or 'none'")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="unlearnbench", description="Benchmark and audit unlearning in diffusion models.")
    p.add_argument("--version", action="version", version=f"unlearnbench {__version__}")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's, or OMP_NUM_THREADS); pin it when other jobs share "
                        "the CPU — oversubscribed threads can make a small UNet ~100x slower")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run methods on a scenario and print the leaderboard")
    run.add_argument("--scenario", default="mnist-class", help="registered scenario name or path to a YAML card")
    run.add_argument("--methods", type=_methods_arg, default=None,
                     help="comma-separated method names (default: the scenario's list)")
    run.add_argument("--attacks", type=_attacks_arg, default=None,
                     help="comma-separated attack names, or 'none' (default: the scenario's list)")
    run.add_argument("--forget-class", type=int, default=None, help="class to forget, class track (default: the card's)")
    run.add_argument("--concept", default=None,
                     help="concept to forget, text track: digit:0..9 or colour:red|green|blue|yellow (default: the card's)")
    run.add_argument("--tier", choices=("smoke", "quick", "full"), default="quick")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--seeds", default=None,
                     help="comma-separated seeds to run in turn (e.g. 0,1,2); the leaderboard then shows the mean "
                          "over seeds with a 95%% t-interval across them. Overrides --seed")
    run.add_argument("--device", default="cpu", help="cpu or cuda[:N] (bf16 autocast on CUDA)")
    run.add_argument("--out", type=Path, default=Path("results"), help="directory for records and tables")
    run.add_argument("--force", action="store_true", help="recompute cells whose record already exists")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")

    lb = sub.add_parser("leaderboard", help="render the leaderboard from stored records")
    lb.add_argument("directory", type=Path)
    lb.add_argument("--no-write", action="store_true", help="print only; do not write leaderboard.md/.csv")

    sub.add_parser("list", help="list registered methods, metrics, scenarios and zoo entries")

    chk = sub.add_parser("check-method", help="run the contract checks and the smoke tier on an adapter")
    chk.add_argument("target", help="path/to/file.py[:Class] or package.module:Class")
    chk.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="config override for the checks (repeatable); default: the card's smoke budget")
    chk.add_argument("--out", type=Path, default=None, help="keep the smoke-tier records here")
    chk.add_argument("--device", default="cpu")

    new = sub.add_parser("new-method", help="write a ready-to-edit adapter file and its test")
    new.add_argument("name")
    new.add_argument("--dir", type=Path, default=Path("."), help="where to write (default: here)")

    zoo = sub.add_parser("zoo", help="reference weights: list, verify or train")
    zsub = zoo.add_subparsers(dest="zoo_command", required=True)
    zsub.add_parser("list", help="zoo entries, where they are and their sha256")
    zsub.add_parser("verify", help="check every shipped file against its recorded sha256")
    tr = zsub.add_parser("train", help="rebuild an entry by its recipe")
    tr.add_argument("name")
    tr.add_argument("--out", type=Path, default=None, help="root folder (default: the user cache)")
    tr.add_argument("--steps", type=int, default=None, help="override the recipe's steps (UNets)")
    tr.add_argument("--checkpoint-every", type=int, default=0,
                    help="UNets: save a resumable checkpoint every N steps (text UNets default to 250)")
    tr.add_argument("--device", default="cpu", help="cpu or cuda[:N] (text UNets; a GPU trains one in minutes)")
    return p


def cmd_run(args: argparse.Namespace) -> int:
    import json

    from benchmark import runner
    from benchmark.results import validate_record
    from reports.leaderboard import render

    if args.forget_class is not None and args.concept is not None:
        raise UnlearnbenchError("--forget-class (class track) and --concept (text track) are exclusive")
    seeds = [args.seed]
    if args.seeds is not None:
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise UnlearnbenchError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
        if not seeds or len(set(seeds)) != len(seeds):
            raise UnlearnbenchError(f"--seeds must list distinct integers, got {args.seeds!r}")
    plans = [runner.plan(args.scenario, args.methods, args.forget_class, args.tier, seed, args.device, args.out,
                         attacks=args.attacks, target=args.concept) for seed in seeds]  # validate all first
    paths = [p for plan in plans for p in runner.execute(plan, show_progress=not args.no_progress, force=args.force)]
    records = [validate_record(json.loads(p.read_text()), str(p)) for p in paths]
    print()
    print(render(records, out_dir=args.out))
    print(f"\nrecords and leaderboard.md / leaderboard.csv in {args.out}/")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from benchmark.results import load_records
    from reports.leaderboard import render

    records = load_records(args.directory)
    if not records:
        raise UnlearnbenchError(f"no result records in {args.directory}")
    print(render(records, out_dir=None if args.no_write else args.directory))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from benchmark import zoo
    from benchmark.registry import ATTACKS, METHODS, METRICS, SCENARIOS
    from benchmark.scenarios import load_scenario

    def tracks(reg: object, name: str) -> str:
        if reg is SCENARIOS:
            try:
                return f"track {load_scenario(name).track:<6}"
            except UnlearnbenchError as exc:
                return f"unreadable card: {exc}"
        if reg in (METHODS, ATTACKS):
            cls = reg.get(name)  # type: ignore[attr-defined]
            return f"tracks {','.join(sorted(getattr(cls, 'supports', None) or getattr(cls, 'tracks', ()))):<11}"
        return ""

    for reg in (METHODS, METRICS, ATTACKS, SCENARIOS):
        print(f"{reg.kind}:")
        for name in reg.names():
            print(f"  {name:<20} {tracks(reg, name)} {reg.origin(name)}".rstrip())
        if not reg.names():
            print("  (none yet)")
    print("zoo:")
    for name in zoo.zoo_names():
        where = zoo.locate(name)
        print(f"  {name:<24} {'shipped' if where and where.parent == zoo.ZOO_DIR else ('cached' if where else 'by recipe')}")
    return 0


def cmd_check_method(args: argparse.Namespace) -> int:
    from benchmark.submission import check_and_smoke, parse_overrides

    results, _ = check_and_smoke(args.target, parse_overrides(args.overrides), args.out, args.device)
    width = max(len(r.name) for r in results)
    for r in results:
        print(f"{'PASS' if r.passed else 'FAIL'}  {r.name:<{width}}  {r.seconds:6.1f}s  {r.detail}")
    failed = sum(not r.passed for r in results)
    print(f"\n{len(results) - failed}/{len(results)} checks passed" + ("" if failed else "; ready to submit"))
    return 1 if failed else 0


def cmd_new_method(args: argparse.Namespace) -> int:
    from benchmark.submission import new_method

    paths = new_method(args.name, args.dir)
    for p in paths:
        print(f"wrote {p}")
    print(f"next: edit {paths[0]}, then `unlearnbench check-method {paths[0]}` and `pytest {paths[1]}`")
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    from benchmark import zoo
    from benchmark.models.fingerprint import verify_sha256

    if args.zoo_command == "list":
        for name in zoo.zoo_names():
            folder = zoo.locate(name)
            m = zoo.read_manifest(folder) if folder else {}
            partial = None if folder else zoo.partial_status(name)
            status = (str(folder) if folder else f"(training: step {partial[0]}/{partial[1]} in {partial[2]})"
                      if partial else "(not built)")
            print(f"{name:<30} {status:<60} {m.get('sha256', '')[:16]}")
        return 0
    if args.zoo_command == "verify":
        bad = 0
        for name in zoo.zoo_names():
            folder = zoo.locate(name)
            if folder is None:
                continue
            try:
                verify_sha256(zoo.weights_file(name, folder), zoo.read_manifest(folder).get("sha256"))
                print(f"ok       {name}")
            except UnlearnbenchError as exc:
                bad += 1
                print(f"MISMATCH {name}: {exc}")
        return 1 if bad else 0
    overrides = {"steps": args.steps} if args.steps is not None else {}
    zoo.recipe_for(args.name)
    if overrides and args.name == "mnist-judge":
        raise UnlearnbenchError("--steps applies to UNet recipes; the judge trains for a fixed number of epochs")
    folder = zoo.build(args.name, args.out, show_progress=True, checkpoint_every=args.checkpoint_every,
                       device=args.device, **overrides)
    m = zoo.read_manifest(folder)
    print(f"{args.name}: {folder}\nsha256 {m['sha256']}\nquality {m.get('quality')}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"run": cmd_run, "leaderboard": cmd_leaderboard, "list": cmd_list, "zoo": cmd_zoo,
                "check-method": cmd_check_method, "new-method": cmd_new_method}
    try:
        if args.threads is not None:
            if args.threads < 1:
                raise UnlearnbenchError(f"--threads must be a positive integer, got {args.threads}")
            import torch

            torch.set_num_threads(args.threads)
        return handlers[args.command](args)
    except UnlearnbenchError as exc:
        print(f"unlearnbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("unlearnbench: interrupted; finished records are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
