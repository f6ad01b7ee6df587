"""``unlearnbench`` command line: run | leaderboard | compare | audit | list | check-method | new-method | zoo.

Bad input prints one ``unlearnbench: error: ...`` line to stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

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


def _instrument_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clip-weights", default=None, metavar="ARCH=FILE",
                   help="Stable Diffusion scenarios: CLIP score with a local open_clip checkpoint, e.g. "
                        "ViT-L-14=/models/open_clip_vit_l14.bin (never downloaded)")
    p.add_argument("--inception-weights", default=None, metavar="FILE",
                   help="Stable Diffusion scenarios: FID[Inception] with a local pt_inception-2015-12-05-6726825d.pth")
    p.add_argument("--nudity-convention", default=None, metavar="NAME",
                   help="NudeNet-judged scenarios: which detections count as nudity — i2p (the card's default: "
                        "I2P / EraseDiff), i2p+body, or unlearndiffatk (UnlearnDiffAtk's classes and threshold)")


class _Parser(argparse.ArgumentParser):
    """Bad arguments (an unknown option, a tier not in the choices) are one ``unlearnbench: error:`` line and
    exit 2, like every other bad input; the usage is one ``--help`` away. Subcommands inherit it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"unlearnbench: error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="unlearnbench", description="Benchmark and audit unlearning in diffusion models.")
    p.add_argument("--version", action="version", version=f"unlearnbench {__version__}")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: OMP_NUM_THREADS if set, else the cores not busy with other "
                        "processes; oversubscribed threads can make a small UNet ~100x slower)")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run methods on a scenario and print the leaderboard")
    run.add_argument("--scenario", default="mnist-class", help="registered scenario name or path to a YAML card")
    run.add_argument("--methods", type=_methods_arg, default=None,
                     help="comma-separated method names (default: the scenario's list)")
    run.add_argument("--attacks", type=_attacks_arg, default=None,
                     help="comma-separated attack names, or 'none' (default: the scenario's list)")
    run.add_argument("--forget-class", default=None,
                     help="class(es) to forget, class track, comma-separated for a grid (e.g. 0,3; default: the card's)")
    run.add_argument("--concept", default=None,
                     help="concept(s) to forget, text track, comma-separated for a grid: digit:0..9 or "
                          "colour:red|green|blue|yellow (default: the card's)")
    run.add_argument("--base", default=None, metavar="DIR",
                     help="the model to unlearn from, replacing the card's base: a local diffusers folder "
                          "(safetensors), e.g. your Stable Diffusion pipeline for --scenario sd-nudity")
    run.add_argument("--prompts", default=None, metavar="FILE.csv",
                     help="prompt-set scenarios (sd-nudity): the forget prompts, I2P CSV layout (prompt, seed, "
                          "guidance); never handed to a method, only sampled and judged")
    _instrument_args(run)
    run.add_argument("--tier", choices=("smoke", "quick", "full"), default="quick")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--seeds", default=None,
                     help="comma-separated seeds to run in turn (e.g. 0,1,2); the leaderboard then shows the mean "
                          "over seeds with a 95%% t-interval across them. Overrides --seed")
    run.add_argument("--device", default="cpu", help="cpu or cuda[:N] (bf16 autocast on CUDA)")
    run.add_argument("--out", type=Path, default=Path("results"), help="directory for records and tables")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="METHOD.KEY=VALUE",
                     help="one-off config override on top of the tier budget (repeatable); KEY=VALUE alone when "
                          "one method runs. Recorded, and part of the record's identity")
    run.add_argument("--force", action="store_true", help="recompute cells whose record already exists")
    run.add_argument("--save-weights", action="store_true",
                     help="keep each unlearned model beside its record (<record>.weights/, safetensors) for "
                          "`unlearnbench audit RECORD.json`")
    run.add_argument("--executor", choices=("local", "dask"), default="local",
                     help="local: cells in turn in this process; dask: cells as Dask tasks (pip install "
                          "'unlearnbench[dask]'), on a local cluster or on --scheduler")
    run.add_argument("--scheduler", default=None, help="address of a running Dask scheduler (tcp://host:8786)")
    run.add_argument("--workers", type=int, default=None,
                     help="local Dask cluster: worker processes (default: one per free core, or per GPU)")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")

    lb = sub.add_parser("leaderboard", help="render the leaderboard from stored records")
    lb.add_argument("directory", type=Path, nargs="+",
                    help="results folder(s); records of later folders (e.g. shared baselines) join the first's "
                         "tables when comparable, and the rest are listed with the reason")
    lb.add_argument("--no-write", action="store_true", help="print only; do not write leaderboard.md/.csv")

    cmp = sub.add_parser("compare", help="did a re-run reproduce stored records? Pairs records by file name "
                                         "(identity) and lists every measured value that differs")
    cmp.add_argument("a", type=Path, help="records folder or record file (e.g. the published docs/records/...)")
    cmp.add_argument("b", type=Path, help="records folder or record file (e.g. your re-run's --out)")
    cmp.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default 0: exact)")
    cmp.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0: exact)")

    sub.add_parser("list", help="list registered methods, metrics, scenarios and zoo entries")

    au = sub.add_parser("audit", help="audit a released model: metrics and attacks vs its reference and the "
                                      "oracle → report.html / report.md / report.json")
    au.add_argument("model", help="a model folder (ours or a diffusers UNet folder), a zoo name, a result record "
                                  "(.json, run with --save-weights) or a weights file (needs --reference)")
    au.add_argument("--reference", default=None,
                    help="the model it was derived from (default: the scenario's base model)")
    au.add_argument("--scenario", default=None,
                    help="scenario name or card (default: a result record's own, else by the model's track)")
    au.add_argument("--forget-class", type=int, default=None,
                    help="class track: the class it claims to forget (default: a result record's own, else the card's)")
    au.add_argument("--concept", default=None,
                    help="text track: the concept it claims to forget (default: a result record's own, else the card's)")
    au.add_argument("--tier", choices=("smoke", "quick", "full"), default="quick")
    au.add_argument("--seed", type=int, default=None, help="sampling and attack seed (default: a result record's "
                                                           "own, else 0)")
    au.add_argument("--attacks", type=_attacks_arg, default=None, help="attack names, or 'none' (default: the card's)")
    au.add_argument("--prompts", default=None,
                    help="text-to-image models: a CSV of prompts (I2P layout: prompt, seed, guidance); for Stable "
                         "Diffusion (sd-nudity) it is the forget prompt set, else an extra per-prompt table")
    _instrument_args(au)
    au.add_argument("--allow-pickle", action="store_true",
                    help="read pickle checkpoints (.ckpt/.bin/.pt) with torch.load(weights_only=True)")
    au.add_argument("--device", default="cpu")
    au.add_argument("--out", type=Path, default=Path("audit"))
    au.add_argument("--no-progress", action="store_true")

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


def _int_list(text: str | None, flag: str) -> list[int] | None:
    if text is None:
        return None
    parts = [s.strip() for s in str(text).split(",")]
    if not any(parts):
        raise UnlearnbenchError(f"{flag} is empty: give comma-separated integers, e.g. 0,1,2")
    try:
        values = [int(s) for s in parts]
    except ValueError:
        raise UnlearnbenchError(f"{flag} must be comma-separated integers, got {text!r}") from None
    if len(set(values)) != len(values):
        raise UnlearnbenchError(f"{flag} must list distinct integers, got {text!r}")
    return values


def _out_dir(path: Path | None, flag: str = "--out") -> Path | None:
    """Refuse an output path that cannot be a folder before any work starts (``atomic.check_out_dir``)."""
    from benchmark.atomic import check_out_dir

    return check_out_dir(path, flag) if path is not None else None


def _str_list(text: str | None, flag: str) -> list[str] | None:
    if text is None:
        return None
    values = [s.strip() for s in text.split(",") if s.strip()]
    if not values or len(set(values)) != len(values):
        raise UnlearnbenchError(f"{flag} must list distinct values, got {text!r}")
    return values


def method_overrides(items: list[str], methods: list[str] | None) -> dict[str, dict]:
    """``--set method.key=value`` (or ``key=value`` when exactly one method runs) → {method: {key: value}}."""
    from benchmark.submission import parse_overrides

    out: dict[str, dict] = {}
    for key, value in parse_overrides(items).items():
        method, dot, option = key.partition(".")
        if not dot:
            if not methods or len(methods) != 1:
                raise UnlearnbenchError(f"--set {key}=...: name the method as METHOD.{key}=VALUE when more than "
                                        "one method runs")
            method, option = methods[0], key
        out.setdefault(method, {})[option] = value
    return out


def cmd_run(args: argparse.Namespace) -> int:
    import json

    from benchmark import runner
    from benchmark.results import load_records_by_name, validate_record
    from reports.leaderboard import render

    if args.forget_class is not None and args.concept is not None:
        raise UnlearnbenchError("--forget-class (class track) and --concept (text track) are exclusive")
    _out_dir(args.out)
    seeds = [args.seed] if args.seeds is None else _int_list(args.seeds, "--seeds")
    targets: list = (_int_list(args.forget_class, "--forget-class") or _str_list(args.concept, "--concept")
                     or [None])
    base = None
    instruments = {k: v for k, v in (("clip", args.clip_weights), ("inception", args.inception_weights),
                                     ("nudity_convention", args.nudity_convention)) if v}
    if args.base is not None or args.prompts is not None or instruments:
        from benchmark.audit import read_prompts
        from benchmark.models.loading import load_model

        if args.executor != "local":
            raise UnlearnbenchError("--base / --prompts work with the local executor")
        rows = read_prompts(args.prompts) if args.prompts is not None else []
        if rows or instruments:
            targets = [{"concept": t, "prompts": rows, **instruments} for t in targets]
        if args.base is not None:
            base, _ = load_model(args.base, False, what="base")
    sources = {runner.register_adapter(m): m for m in args.methods or []}  # adapter files → registered names
    names = list(sources) or None
    overrides = method_overrides(args.overrides, names)
    plans = [runner.plan(args.scenario, names, None, args.tier, seed, args.device, args.out,
                         attacks=args.attacks, target=target, overrides=overrides)
             for target in targets for seed in seeds]  # validate every cell of the grid first
    for plan in plans:
        plan.save_weights = args.save_weights
        plan.base = base
    if instruments:  # the user's measuring files load (or fail in one line) before any cell runs
        from benchmark.scenarios.setup import setup_for

        setup_for(plans[0].scenario, plans[0].target, args.device, log=lambda *_: None).load_instruments()
    if args.executor == "dask":
        from benchmark.executors import run_dask, specs_of

        if args.workers is not None and args.workers < 1:
            raise UnlearnbenchError(f"--workers must be a positive integer, got {args.workers}")
        specs = specs_of(plans, sources, overrides, args.attacks, args.force, args.threads)
        paths = run_dask(specs, args.scheduler, args.workers, show_progress=not args.no_progress)
    else:
        if args.scheduler or args.workers:
            raise UnlearnbenchError("--scheduler and --workers need --executor dask")
        paths = [p for plan in plans for p in runner.execute(plan, show_progress=not args.no_progress,
                                                             force=args.force)]
    records = [validate_record(json.loads(p.read_text()), str(p)) for p in paths]
    print()
    # the files cover every record in --out, as `unlearnbench leaderboard OUT` would: a run of one more method
    # into a folder of baselines adds its row instead of replacing the table; the terminal shows this run's cells
    ours = {p.name for p in paths}
    try:
        others = [r for name, r in load_records_by_name(args.out).items() if name not in ours]
    except UnlearnbenchError as exc:  # an unreadable file in --out must not cost the run its table
        print(f"note: leaderboard.md covers this run's records only ({exc})")
        others = []
    print(render(records, out_dir=None if others else args.out))
    if others:
        render(records + others, out_dir=args.out)
    print(f"\nrecords in {args.out}/; leaderboard.md / leaderboard.csv there cover "
          + (f"them and the folder's {len(others)} other record(s)" if others else "them"))
    failed = runner.failed_cells(paths)
    for line in failed:
        print(f"unlearnbench: failed cell: {line}", file=sys.stderr)
    if failed:
        print(f"unlearnbench: {len(failed)} of {len(paths)} cells failed (records kept with status: failed)",
              file=sys.stderr)
    return 1 if failed else 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from benchmark.results import load_records
    from reports.leaderboard import merge_folders, render

    folders = [load_records(d) for d in args.directory]
    if not folders[0]:
        raise UnlearnbenchError(f"no result records in {args.directory[0]}")
    records, refused = merge_folders(folders, [str(d) for d in args.directory])
    print(render(records, out_dir=None if args.no_write else args.directory[0]))
    for line in refused:
        print(f"not merged: {line}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from benchmark.audit import plan_audit, run_audit

    if args.forget_class is not None and args.concept is not None:
        raise UnlearnbenchError("--forget-class (class track) and --concept (text track) are exclusive")
    target = args.forget_class if args.forget_class is not None else args.concept
    plan = plan_audit(args.model, args.reference, args.scenario, target, args.tier, args.seed, args.attacks,
                      args.prompts, args.allow_pickle, args.device, args.out,
                      {"clip": args.clip_weights, "inception": args.inception_weights,
                       "nudity_convention": args.nudity_convention})
    paths = run_audit(plan, show_progress=not args.no_progress)
    report = __import__("json").loads(paths["json"].read_text())
    print(f"\nverdict: {report['verdict']['summary']}")
    print(f"report: {paths['html']} (and report.md, report.json)")
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
    names = zoo.zoo_names()
    width = max((len(n) for n in names), default=0)
    for name in names:
        where = zoo.locate(name)
        state = "shipped" if where and where.parent == zoo.ZOO_DIR else ("cached" if where else "by recipe")
        print(f"  {name:<{width}}  {state}")
    return 0


def cmd_check_method(args: argparse.Namespace) -> int:
    from benchmark.submission import check_and_smoke, parse_overrides

    results, _ = check_and_smoke(args.target, parse_overrides(args.overrides), _out_dir(args.out), args.device)
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
    folder = zoo.build(args.name, _out_dir(args.out), show_progress=True, checkpoint_every=args.checkpoint_every,
                       device=args.device, **overrides)
    m = zoo.read_manifest(folder)
    print(f"{args.name}: {folder}\nsha256 {m['sha256']}\nquality {m.get('quality')}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Exit 0 when every paired record reproduces, 1 when a measured value differs, 2 on bad input."""
    from benchmark.compare import compare_records, render

    cmp = compare_records(args.a, args.b, rtol=args.rtol, atol=args.atol)
    if not cmp.paired:
        raise UnlearnbenchError(f"no records in common between {args.a} and {args.b} (records pair by file name, "
                                "which carries the card hash and config: another card version pairs nothing)")
    print(render(cmp, str(args.a), str(args.b), args.rtol, args.atol))
    return 0 if cmp.identical else 1


def _terminate_as_interrupt() -> Any:
    """SIGTERM (``timeout``, a batch scheduler's warning, ``kill``) stops a run as Ctrl-C does: the cell in
    flight removes its side files and finished records are kept. Only in the main thread, and only where
    nothing else (a test harness, an embedding program) installed a handler of its own. Returns the function
    that puts the default back (``main`` calls it on the way out, so a late SIGTERM ends the process plainly)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return lambda: None

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    return lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"run": cmd_run, "leaderboard": cmd_leaderboard, "list": cmd_list, "zoo": cmd_zoo,
                "check-method": cmd_check_method, "new-method": cmd_new_method, "audit": cmd_audit,
                "compare": cmd_compare}
    restore_sigterm = _terminate_as_interrupt()
    try:
        if args.command in ("run", "check-method", "zoo", "audit") or args.threads is not None:
            from benchmark.threads import configure_threads

            configure_threads(args.threads)
        return handlers[args.command](args)
    except UnlearnbenchError as exc:  # one line, whatever a library's message it wraps looks like
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"unlearnbench: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("unlearnbench: interrupted; finished records are kept", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly, as other CLIs do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        restore_sigterm()


if __name__ == "__main__":
    sys.exit(main())
