"""The `accessdrift` command."""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from accessdrift.alerts.sinks import DiscardSink, JsonLinesSink, RecordSink, TextSink
from accessdrift.models.clock import parse_us
from accessdrift.models.errors import PolicyError
from accessdrift.models.policy import Policy, load_policy
from accessdrift.streams.engine import Engine
from accessdrift.streams.replay import replay

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2


def _timestamp(text: str) -> int:
    try:
        return parse_us(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"seconds must be 0 or more, not {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="accessdrift",
        description="Streaming state-drift detector for identity access.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "replay",
        help="run the engine over recorded events (event time) and print findings",
        description=(
            "Replay recorded events through the engine with event time as the clock. Each input "
            'line is {"topic": "<stream>", "value": {<event>}}. Findings go to standard output '
            "as JSON lines; bad lines and a summary go to standard error. Exit status: 0 when "
            "every line was accepted, 1 when some were rejected, 2 for a usage error."
        ),
    )
    run.add_argument("files", nargs="+", metavar="FILE", help="input files; - reads standard input")
    run.add_argument(
        "--policy", metavar="FILE", help="policy file (TOML or YAML) overriding defaults"
    )
    run.add_argument(
        "--until",
        type=_timestamp,
        metavar="TIME",
        help="after the input, move the clock to TIME (RFC 3339) so later deadlines fire",
    )
    run.add_argument(
        "--grace",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="lateness tolerated after a deadline before it fires (default 0)",
    )
    run.add_argument(
        "--evidence",
        metavar="FILE",
        help="write offboarding evidence records to FILE (- : standard output, with the findings)",
    )
    run.add_argument(
        "--format",
        choices=("json", "text"),
        default="json",
        help="json: one stable JSON object per line (default); text: one line for a person",
    )
    return parser


@contextlib.contextmanager
def _inputs(names: Sequence[str]) -> Iterator[list[tuple[str, BinaryIO]]]:
    with contextlib.ExitStack() as stack:
        opened: list[tuple[str, BinaryIO]] = []
        for name in names:
            if name == "-":
                opened.append(("<stdin>", sys.stdin.buffer))
            else:
                opened.append((name, stack.enter_context(Path(name).open("rb"))))
        yield opened


def _sink(output_format: str, stream: BinaryIO) -> RecordSink:
    if output_format == "text":
        return TextSink(io.TextIOWrapper(stream, encoding="utf-8", write_through=True))
    return JsonLinesSink(stream)


def _replay(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.policy) if args.policy else Policy()
    except PolicyError as error:
        print(f"accessdrift: {error}", file=sys.stderr)
        return EXIT_USAGE
    missing = [name for name in args.files if name != "-" and not Path(name).is_file()]
    if missing:
        print(f"accessdrift: no such input file: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    with contextlib.ExitStack() as stack:
        findings = _sink(args.format, sys.stdout.buffer)
        evidence: RecordSink = DiscardSink()
        if args.evidence == "-":
            evidence = findings
        elif args.evidence:
            try:
                evidence_file = stack.enter_context(Path(args.evidence).open("wb"))
            except OSError as error:
                print(
                    f"accessdrift: cannot write {args.evidence}: {error.strerror}", file=sys.stderr
                )
                return EXIT_USAGE
            evidence = _sink(args.format, evidence_file)
        inputs = stack.enter_context(_inputs(args.files))
        summary = replay(
            inputs,
            Engine(policy, grace_s=args.grace),
            findings,
            evidence,
            errors=sys.stderr,
            until_us=args.until,
            progress=sys.stderr if sys.stderr.isatty() else None,
        )
    print(summary.describe(), file=sys.stderr)
    return EXIT_REJECTED if summary.rejected else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `accessdrift` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "replay":
        return _replay(args)
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
