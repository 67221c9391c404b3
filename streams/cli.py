"""The `accessdrift` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import msgspec
from prometheus_client import CollectorRegistry
from pydantic import SecretStr, ValidationError

from accessdrift.alerts.notify import Source, serve
from accessdrift.alerts.settings import build_sinks, load_notify_settings
from accessdrift.alerts.sinks import DiscardSink, JsonLinesSink, RecordSink, TextSink
from accessdrift.models.clock import MAX_DURATION_S, format_us, parse_us
from accessdrift.models.config import SecretRef
from accessdrift.models.errors import BrokerError, PolicyError
from accessdrift.models.findings import Record, decode_record
from accessdrift.models.kafka import KafkaSecurity
from accessdrift.models.policy import Policy, load_policy
from accessdrift.models.text import echo, parse_switch, printable
from accessdrift.streams.broker import LOOPBACK, EmbeddedBroker
from accessdrift.streams.demo import run_demo
from accessdrift.streams.durable import EXIT_STORE_FAILED, data_dir_problem
from accessdrift.streams.engine import Engine
from accessdrift.streams.produce import produce
from accessdrift.streams.replay import (
    DEFAULT_LATENESS_S,
    DEFAULT_MAX_AHEAD_S,
    InputError,
    replay,
)
from accessdrift.streams.report import ReplayOptions, write_report
from accessdrift.streams.settings import DEFAULT_BROKER, Topics, broker_from_env
from accessdrift.streams.signals.receiver import serve as serve_ingest
from accessdrift.streams.signals.settings import load_ingest_settings
from accessdrift.streams.simulate import SimulationSettings, compare, read_truth, write_simulation
from accessdrift.streams.worker import WorkerSettings, run_worker

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
#: 128 + SIGPIPE, what a shell reports for a tool killed by a closed pipe.
EXIT_BROKEN_PIPE = 141


#: Kafka TLS and SASL come from the environment only (secrets stay off command lines).
KAFKA_SECURITY_HELP = (
    "Kafka TLS and SASL: ACCESSDRIFT_KAFKA_SECURITY_PROTOCOL (PLAINTEXT, SSL, SASL_SSL), "
    "ACCESSDRIFT_KAFKA_CA_FILE, ACCESSDRIFT_KAFKA_CERT_FILE and ACCESSDRIFT_KAFKA_KEY_FILE, "
    "ACCESSDRIFT_KAFKA_SASL_MECHANISM (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN), "
    "ACCESSDRIFT_KAFKA_SASL_USERNAME, ACCESSDRIFT_KAFKA_SASL_PASSWORD or "
    "ACCESSDRIFT_KAFKA_SASL_PASSWORD_FILE."
)


def _timestamp(text: str) -> int:
    try:
        return parse_us(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {echo(text)}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"seconds must be 0 or more, not {echo(text)}")
    if value > MAX_DURATION_S:
        raise argparse.ArgumentTypeError(
            f"{echo(text)} seconds is longer than the limit of {MAX_DURATION_S} (ten years)"
        )
    return value


def _replay_flags(parser: argparse.ArgumentParser) -> None:
    """How a history is replayed: shared by replay and report."""
    parser.add_argument(
        "--until",
        type=_timestamp,
        metavar="TIME",
        help="after the input, move the clock to TIME (RFC 3339) so later deadlines fire",
    )
    parser.add_argument(
        "--grace",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="lateness tolerated after a deadline before it fires (default 0)",
    )
    parser.add_argument(
        "--lateness",
        type=_seconds,
        default=float(DEFAULT_LATENESS_S),
        metavar="SECONDS",
        help=(
            "how far each input may be out of time order; events are merged by time within it "
            f"(default {DEFAULT_LATENESS_S})"
        ),
    )
    parser.add_argument(
        "--max-ahead",
        type=_seconds,
        default=float(DEFAULT_MAX_AHEAD_S),
        metavar="SECONDS",
        help=(
            "reject an event dated more than this after the latest one of its input, so that a "
            f"wrong clock cannot move the replay's clock (default {DEFAULT_MAX_AHEAD_S}, 30 days)"
        ),
    )


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
    _replay_flags(run)
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
    broker = commands.add_parser(
        "broker",
        help="run a local Kafka-protocol broker (memory only) for development and demos",
        description=(
            "Run the embedded Tansu broker on loopback until interrupted (Ctrl-C). It speaks the "
            "Kafka protocol but keeps everything in memory: for development, demos and tests "
            "only. In production, point the worker at a real Kafka cluster."
        ),
    )
    broker.add_argument(
        "--host", default=LOOPBACK, help=f"address to listen on (default {LOOPBACK})"
    )
    broker.add_argument("--port", type=int, default=9092, help="port to listen on (default 9092)")

    send = commands.add_parser(
        "produce",
        help="publish replay-format lines to Kafka",
        description=(
            "Validate each replay-format line and publish its event to its stream's topic, keyed "
            "by identity_id (device_id for device.posture). Bad lines are reported as FILE:LINE: "
            "reason and not sent. Topic names come from ACCESSDRIFT_TOPIC_<STREAM> variables. "
            "Exit status: 0 all sent, 1 some rejected, 2 usage error, 3 Kafka unreachable. "
            + KAFKA_SECURITY_HELP
        ),
    )
    send.add_argument(
        "files", nargs="+", metavar="FILE", help="input files; - reads standard input"
    )
    send.add_argument(
        "--broker",
        default=None,
        help=f"Kafka bootstrap address (default: ACCESSDRIFT_BROKER or {DEFAULT_BROKER})",
    )
    send.add_argument(
        "--rate",
        type=float,
        default=None,
        metavar="EVENTS_PER_S",
        help="send at most this many events a second (default: as fast as Kafka takes them)",
    )
    _topic_flag(send)
    work = commands.add_parser(
        "worker",
        help="run the engine live on Kafka (faust worker)",
        description=(
            "Consume the four input topics, keep per-identity state in a changelog-backed table, "
            "fire deadlines as time passes, and publish findings to the findings topic and bad "
            "records to the dead-letter topic. Every flag has an ACCESSDRIFT_ variable (shown in "
            "brackets); a flag wins over the variable. Stops cleanly on Ctrl-C or SIGTERM. "
            + KAFKA_SECURITY_HELP
        ),
    )
    _env_flag(work, "--broker", "BROKER", DEFAULT_BROKER, "Kafka bootstrap address")
    _env_flag(work, "--policy", "POLICY", None, "policy file (TOML or YAML)")
    _topic_flag(work)
    _env_flag(work, "--app-id", "APP_ID", "accessdrift", "consumer group and internal topic prefix")
    _env_flag(work, "--partitions", "PARTITIONS", "8", "partitions of internal topics and tables")
    _env_flag(
        work,
        "--replication-factor",
        "REPLICATION_FACTOR",
        "1",
        "replicas of the internal topics and changelogs it creates (3 on a production cluster)",
    )
    _env_flag(work, "--web-host", "WEB_HOST", LOOPBACK, "address the worker's web server binds")
    _env_flag(work, "--web-port", "WEB_PORT", "6066", "port of the worker's web server")
    _env_flag(
        work,
        "--api-token-file",
        "API_TOKEN_FILE",
        None,
        "file holding the bearer token of the access-picture API (or set ACCESSDRIFT_API_TOKEN); "
        "without one the API answers 401",
    )
    _env_flag(work, "--store", "STORE", "memory", "table store: memory, or rocksdb (rocksdict)")
    _env_flag(work, "--data-dir", "DATA_DIR", ".accessdrift", "where a rocksdb store keeps data")
    _env_flag(work, "--grace", "GRACE_S", "60", "seconds of lateness tolerated after a deadline")
    _env_flag(
        work, "--session-timeout", "SESSION_TIMEOUT_S", "30", "consumer group session timeout (s)"
    )
    _env_flag(
        work,
        "--one-record-batches",
        "ONE_RECORD_BATCHES",
        "false",
        "true on the embedded broker, whose wrong end offsets would make a restarted worker "
        "miss part of its changelog (README: the embedded broker); never needed on Kafka",
    )
    _env_flag(
        work,
        "--clock",
        "CLOCK",
        "wall",
        "wall: deadlines fire as time passes, once the input that could meet them is read; "
        "event: the clock is event time alone, as in replay (for backfills through Kafka)",
    )
    _env_flag(
        work,
        "--max-ahead",
        "MAX_AHEAD_S",
        None,
        "dead-letter an event dated more than this many seconds ahead of wall time (wall clock; "
        "default 3600) or of the latest event read (event clock; default 2592000)",
    )
    sim = commands.add_parser(
        "simulate",
        help="write a simulated organisation's history and its ground truth",
        description=(
            "Write the seeded history of a simulated organisation as replay lines (standard "
            "output or --out), in arrival order, and with --truth the findings a correct "
            "detector must produce, derived from the failures the simulator injected. Replay "
            "the history with `accessdrift replay --until <the printed time>`, then check the "
            "records with `accessdrift verify`."
        ),
    )
    sim.add_argument("--identities", type=int, default=1000, help="how many (default 1000)")
    sim.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    sim.add_argument(
        "--failure-share",
        type=float,
        default=0.2,
        help="share of access changes injected as failures (default 0.2)",
    )
    sim.add_argument("--out", metavar="FILE", help="write the history here (default stdout)")
    sim.add_argument("--truth", metavar="FILE", help="write the ground truth here")
    check = commands.add_parser(
        "verify",
        help="check findings against a simulation's ground truth",
        description=(
            "Read records (JSON lines, as replay prints them or the findings topic holds them) "
            "and say whether they are exactly what the ground truth implies: every finding that "
            "must open and resolve, no other, and the offboarding evidence. Exit status 0 when "
            "they agree, 1 when they do not, 2 for a usage error."
        ),
    )
    check.add_argument("--truth", metavar="FILE", required=True, help="the simulation's truth")
    check.add_argument("files", nargs="+", metavar="FILE", help="records; - reads standard input")
    notify = commands.add_parser(
        "notify",
        help="deliver findings from Kafka to SIEMs, syslog, webhooks and pagers",
        description=(
            "Read the findings topic and deliver every record to each sink of the settings file "
            "(Splunk HEC, syslog, a Kafka topic, a signed webhook, PagerDuty, Alertmanager; see "
            "the README). Each sink has its own consumer group and commits only what its "
            "receiver accepted. Serves /metrics and /healthz on the web port. Stops cleanly on "
            "Ctrl-C or SIGTERM. " + KAFKA_SECURITY_HELP
        ),
    )
    _env_flag(notify, "--config", "NOTIFY_CONFIG", None, "sinks settings file (TOML or YAML)")
    _env_flag(notify, "--broker", "BROKER", DEFAULT_BROKER, "Kafka bootstrap address")
    _topic_flag(notify)
    _env_flag(notify, "--web-host", "NOTIFY_WEB_HOST", LOOPBACK, "address of the web server")
    _env_flag(notify, "--web-port", "NOTIFY_WEB_PORT", "6067", "port of the web server")
    ingest = commands.add_parser(
        "ingest",
        help="receive CAEP/RISC Security Event Tokens and signed webhooks into the contract",
        description=(
            "Serve the receiver of the settings file: OpenID Shared Signals push delivery "
            "(RFC 8935) of CAEP and RISC events at POST /ssf/<transmitter>, and Standard "
            "Webhooks from MDM and HR tools at POST /webhooks/<source>, each mapped onto the "
            "contract topics as partial updates and produced with acks=all before the request "
            "is acknowledged. Serves /metrics and /healthz. Stops cleanly on Ctrl-C or "
            "SIGTERM. " + KAFKA_SECURITY_HELP
        ),
    )
    _env_flag(ingest, "--config", "INGEST_CONFIG", None, "ingest settings file (TOML or YAML)")
    _env_flag(ingest, "--broker", "BROKER", DEFAULT_BROKER, "Kafka bootstrap address")
    _topic_flag(ingest)
    rep = commands.add_parser(
        "report",
        help="write an HTML report of a history for auditors and policy owners",
        description=(
            "Replay recorded events (as `accessdrift replay` does) and write one self-contained "
            "HTML file: time to revoke per trigger and for privileged access, findings over "
            "time, offboarding evidence completeness and control debt. With --compare, the same "
            "history is replayed under a second policy and the report shows how findings and "
            "shares within the window would change. Exit status: 0 when every line was "
            "accepted, 1 when some were rejected (reported as FILE:LINE), 2 for a usage error."
        ),
    )
    rep.add_argument("files", nargs="+", metavar="FILE", help="input files (replay format)")
    rep.add_argument("--policy", metavar="FILE", help="policy file (default: the shipped one)")
    rep.add_argument("--compare", metavar="POLICY", help="a second policy file for the what-if")
    rep.add_argument("--out", metavar="FILE", required=True, help="the HTML file to write")
    rep.add_argument("--title", default="accessdrift report", help="the report's title")
    _replay_flags(rep)
    commands.add_parser(
        "demo",
        help="run the live pipeline on this machine: broker, worker and a scripted story",
        description=(
            "Start the embedded broker and a worker, feed a scripted story through Kafka in real "
            "time with a demo policy of second-long windows, and print findings as they are "
            "published. Takes about a minute and a half; Ctrl-C stops it and everything it "
            "started."
        ),
    )
    return parser


def _topic_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--topic",
        action="append",
        default=[],
        metavar="NAME=TOPIC",
        help=(
            "topic for a stream or output, repeatable: identity.status, device.posture, "
            "entitlement.change, access.exception, findings, deadletter (each also "
            "ACCESSDRIFT_TOPIC_<NAME>, e.g. ACCESSDRIFT_TOPIC_IDENTITY_STATUS)"
        ),
    )


def _boolean(flag: str, value: str) -> bool:
    """A true/false flag or variable; raises ValueError naming the flag."""
    switch = parse_switch(value)
    if switch is None:
        raise ValueError(f"{flag} must be true or false, not {echo(value)}")
    return switch


def _env_flag(
    parser: argparse.ArgumentParser, flag: str, variable: str, default: str | None, text: str
) -> None:
    name = f"ACCESSDRIFT_{variable}"
    shown = f" (default {default})" if default is not None else ""
    parser.add_argument(flag, default=os.environ.get(name, default), help=f"{text} [{name}]{shown}")


@contextlib.contextmanager
def _inputs(names: Sequence[str]) -> Iterator[list[tuple[str, BinaryIO]]]:
    """The named inputs opened for reading (`-`: standard input; pipes such as /dev/stdin or
    `<(zcat …)` too). Raises InputError naming the first that cannot be opened."""
    with contextlib.ExitStack() as stack:
        opened: list[tuple[str, BinaryIO]] = []
        for name in names:
            if name == "-":
                opened.append(("<stdin>", sys.stdin.buffer))
                continue
            try:
                opened.append((name, stack.enter_context(Path(name).open("rb"))))
            except OSError as error:
                raise InputError(
                    f"cannot read {printable(name)}: {error.strerror or error}"
                ) from None
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
    try:
        with contextlib.ExitStack() as stack:
            inputs = stack.enter_context(_inputs(args.files))
            findings = _sink(args.format, sys.stdout.buffer)
            evidence: RecordSink = DiscardSink()
            if args.evidence == "-":
                evidence = findings
            elif args.evidence:
                try:
                    evidence_file = stack.enter_context(Path(args.evidence).open("wb"))
                except OSError as error:
                    raise InputError(
                        f"cannot write {printable(args.evidence)}: {error.strerror or error}"
                    ) from None
                evidence = _sink(args.format, evidence_file)
            summary = replay(
                inputs,
                Engine(policy, grace_s=args.grace),
                findings,
                evidence,
                errors=sys.stderr,
                until_us=args.until,
                progress=sys.stderr if sys.stderr.isatty() else None,
                lateness_s=args.lateness,
                max_ahead_s=args.max_ahead,
            )
    except InputError as error:
        print(f"accessdrift: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(summary.describe(), file=sys.stderr)
    return EXIT_REJECTED if summary.rejected else EXIT_OK


def _report(args: argparse.Namespace) -> int:
    try:
        policy = ("the shipped defaults", Policy())
        if args.policy:
            policy = (printable(Path(args.policy).name), load_policy(args.policy))
        compare = None
        if args.compare:
            compare = (printable(Path(args.compare).name), load_policy(args.compare))
    except PolicyError as error:
        print(f"accessdrift: {error}", file=sys.stderr)
        return EXIT_USAGE
    options = ReplayOptions(
        grace_s=args.grace, until_us=args.until, lateness_s=args.lateness,
        max_ahead_s=args.max_ahead,
    )  # fmt: skip
    out = Path(args.out)
    try:
        rejected = write_report(
            lambda: _inputs(args.files), policy, compare, options, out, args.title, sys.stderr
        )
    except InputError as error:
        print(f"accessdrift: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        print(f"accessdrift: cannot write {printable(args.out)}: {error.strerror}", file=sys.stderr)
        return EXIT_USAGE
    print(f"accessdrift: report written to {printable(args.out)}", file=sys.stderr)
    return EXIT_REJECTED if rejected else EXIT_OK


def _broker(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    broker = EmbeddedBroker(args.host, args.port)
    try:
        broker.start()
    except BrokerError as error:
        print(f"accessdrift: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(
        f"accessdrift: broker ready at {broker.bootstrap} (Tansu, memory only: for development "
        "and tests; use a real Kafka cluster in production). Ctrl-C stops it.",
        file=sys.stderr,
        flush=True,
    )
    try:
        while broker.running and not stop.wait(0.2):
            pass
        if not broker.running:
            print("accessdrift: the broker exited unexpectedly", file=sys.stderr)
            return EXIT_UNAVAILABLE
    finally:
        broker.stop()
    print("accessdrift: broker stopped", file=sys.stderr)
    return EXIT_OK


def _produce(args: argparse.Namespace) -> int:
    bootstrap = args.broker or broker_from_env()
    if args.rate is not None and not (math.isfinite(args.rate) and args.rate > 0):
        print("accessdrift: --rate must be a number of events a second above 0", file=sys.stderr)
        return EXIT_USAGE
    try:
        topics = Topics.from_env().with_overrides(args.topic)
        security = KafkaSecurity.from_env()
        security.ssl_context()  # a certificate that cannot be used is a usage error, said now
    except ValueError as error:  # KafkaSecurityError or a bad --topic
        print(f"accessdrift: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with _inputs(args.files) as inputs:
            summary = produce(
                inputs, bootstrap, topics, sys.stderr, rate_per_s=args.rate, security=security
            )
    except InputError as error:
        print(f"accessdrift: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokerError as error:
        print(f"accessdrift: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(summary.describe(), file=sys.stderr)
    return EXIT_REJECTED if summary.rejected else EXIT_OK


def _api_token(path: str | None) -> SecretStr | None:
    """The API token from a file, or ACCESSDRIFT_API_TOKEN, or None (the API stays shut)."""
    if path:
        return SecretRef(file=Path(path)).read(os.environ)
    value = os.environ.get("ACCESSDRIFT_API_TOKEN")
    return SecretStr(value) if value else None


def _worker(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.policy) if args.policy else Policy()
    except PolicyError as error:
        print(f"accessdrift: {error}", file=sys.stderr)
        return EXIT_USAGE
    stores = {"memory": "memory://", "rocksdb": "rocksdb://"}
    if args.store not in stores:
        print(f"accessdrift: unknown store {args.store!r}: use memory or rocksdb", file=sys.stderr)
        return EXIT_USAGE
    try:
        token = _api_token(args.api_token_file)
        security = KafkaSecurity.from_env()
        security.ssl_context()
    except ValueError as error:  # KafkaSecurityError or an unreadable token file
        print(f"accessdrift: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        settings = WorkerSettings(
            api_token=token,
            kafka=security,
            web_host=args.web_host,
            app_id=args.app_id,
            broker=args.broker,
            topics=Topics.from_env().with_overrides(args.topic),
            partitions=int(args.partitions),
            replication_factor=int(args.replication_factor),
            store=stores[args.store],
            data_dir=Path(args.data_dir),
            web_port=int(args.web_port),
            grace_s=float(args.grace),
            session_timeout_s=float(args.session_timeout),
            one_record_batches=_boolean("--one-record-batches", args.one_record_batches),
            clock=args.clock,
            max_ahead_s=None if args.max_ahead is None else float(args.max_ahead),
        )
    except (ValueError, ValidationError) as error:
        print(f"accessdrift: invalid worker setting: {error}", file=sys.stderr)
        return EXIT_USAGE
    problem = data_dir_problem(settings.data_dir)
    if problem is not None:
        print(f"accessdrift: {problem}", file=sys.stderr)
        return EXIT_STORE_FAILED
    run_worker(settings, policy)
    return EXIT_OK


def _notify(args: argparse.Namespace) -> int:
    if not args.config:
        print(
            "accessdrift: notify needs --config FILE (or ACCESSDRIFT_NOTIFY_CONFIG)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        topics = Topics.from_env().with_overrides(args.topic)
        port = int(args.web_port)
        settings = load_notify_settings(args.config)
        security = KafkaSecurity.from_env()
        security.ssl_context()
        sinks = build_sinks(settings, args.config, args.broker, security)
    except ValueError as error:  # NotifySettingsError, KafkaSecurityError, a bad --topic or port
        print(f"accessdrift: {error}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        print(
            f"accessdrift: delivering {topics.findings} to {', '.join(s.name for s in sinks)}; "
            f"metrics at http://{args.web_host}:{port}/metrics",
            file=sys.stderr,
            flush=True,
        )
        await serve(
            sinks,
            settings,
            Source(args.broker, topics.findings, security),
            CollectorRegistry(),
            args.web_host,
            port,
            stop,
        )

    try:
        asyncio.run(run())
    except BrokerError as error:
        print(f"accessdrift: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print("accessdrift: notify stopped", file=sys.stderr)
    return EXIT_OK


def _simulate(args: argparse.Namespace) -> int:
    if args.identities < 1 or not 0 <= args.failure_share <= 1:
        print(
            "accessdrift: --identities must be 1 or more, --failure-share 0 to 1", file=sys.stderr
        )
        return EXIT_USAGE
    settings = SimulationSettings(args.identities, args.seed, failure_share=args.failure_share)
    try:
        with contextlib.ExitStack() as stack:
            out = sys.stdout
            if args.out:
                out = stack.enter_context(Path(args.out).open("w", encoding="utf-8"))
            truth = None
            if args.truth:
                truth = stack.enter_context(Path(args.truth).open("w", encoding="utf-8"))
            events, obligations = write_simulation(settings, out, truth)
    except OSError as error:
        print(f"accessdrift: cannot write: {error.strerror or error}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"simulate: {args.identities:,} identities, {events:,} events, {obligations:,} "
        f"obligations; replay with --until {format_us(settings.until_us)}",
        file=sys.stderr,
    )
    return EXIT_OK


def _records(inputs: list[tuple[str, BinaryIO]]) -> list[Record]:
    """Every record of the inputs (canonical JSON lines); InputError names a bad line."""
    records = []
    for name, stream in inputs:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                records.append(decode_record(line))
            except (msgspec.DecodeError, ValueError) as error:
                reason = printable(str(error), 200)
                raise InputError(f"{printable(name)}:{number}: not a record: {reason}") from None
    return records


def _verify(args: argparse.Namespace) -> int:
    try:
        with Path(args.truth).open(encoding="utf-8") as truth_file:
            truth, evidence = read_truth(truth_file)
    except (OSError, ValueError, KeyError) as error:
        print(
            f"accessdrift: cannot read the truth {printable(args.truth)}: {error}", file=sys.stderr
        )
        return EXIT_USAGE
    try:
        with _inputs(args.files) as inputs:
            records = _records(inputs)
    except InputError as error:
        print(f"accessdrift: {error}", file=sys.stderr)
        return EXIT_USAGE
    agreement = compare(truth, evidence, records)
    print(agreement.describe())
    return EXIT_OK if agreement.agrees else EXIT_REJECTED


def _demo(args: argparse.Namespace) -> int:
    del args
    return run_demo(sys.stdout, sys.stderr)


def _ingest(args: argparse.Namespace) -> int:
    if not args.config:
        print(
            "accessdrift: ingest needs --config FILE (or ACCESSDRIFT_INGEST_CONFIG)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        topics = Topics.from_env().with_overrides(args.topic)
        settings = load_ingest_settings(args.config)
        security = KafkaSecurity.from_env()
        security.ssl_context()
    except ValueError as error:  # IngestSettingsError, KafkaSecurityError, a bad --topic
        print(f"accessdrift: {error}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await serve_ingest(
            settings, args.broker, security, topics, CollectorRegistry(), os.environ, stop
        )

    try:
        asyncio.run(run())
    except BrokerError as error:
        print(f"accessdrift: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except ValueError as error:  # a secret the settings name is missing or malformed
        print(f"accessdrift: {args.config}: {error}", file=sys.stderr)
        return EXIT_USAGE
    print("accessdrift: ingest stopped", file=sys.stderr)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `accessdrift` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    commands = {
        "replay": _replay,
        "broker": _broker,
        "produce": _produce,
        "worker": _worker,
        "notify": _notify,
        "ingest": _ingest,
        "simulate": _simulate,
        "verify": _verify,
        "demo": _demo,
        "report": _report,
    }
    try:
        return commands[args.command](args)
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as a tool killed by SIGPIPE would, and
        # keep the interpreter from failing again while flushing the closed stream at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
