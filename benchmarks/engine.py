"""The engine's throughput and memory, against the client alone and a naive importer.

A synthetic connector yields N items and 2N edges (every item links to the
one or two before it).  Measured in one run, each into a fresh embedded Pod:

* the engine (``run_import``, default settings);
* the floor: the client sending the same pre-built bulks (``createItems`` +
  ``createEdges``, the same batch size) back to back;
* a naive importer: one ``create_item`` / ``create_edge`` request per record,
  as in the tutorial — on a subset (``--naive-count`` items), its per-record
  rate extrapolated to the full set;
* all three again with the Pod in another process (``importer pod serve``) —
  in each setting floor and engine run twice, taking turns, and each keeps
  its faster run;
* a grid of EngineSettings (batch_records x max_in_flight) on a subset;
* a connector yielding 1M small items in a child process, its peak RSS.

The goals (>= 0.8 x floor, >= 30 x naive) are judged on the figures with the
Pod in another process; in-process the engine and the Pod share one
interpreter lock, and those ratios are printed against the same goals for
reference (docs/performance.md, "Which engine figure decides its goals").

    python -m benchmarks.engine            # 100k items + 200k edges, 1M small items
    python -m benchmarks.engine --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import anyio
from pydantic import BaseModel

from importer import Checkpoint, Connector, Edge, Item, Record, RunContext
from importer.engine import EngineSettings, RunResult
from importer.pod import ClientAuth, PodClient, load_keys
from importer.testing import local_pod, run_connector

from ._common import (
    MiB,
    bench_parser,
    child_env,
    machine_line,
    print_table,
    report_ratio,
    run_child,
    served_pod,
    stopwatch,
)

_GOAL_VS_FLOOR = 0.8
_GOAL_VS_NAIVE = 30.0
_GOAL_MILLION_RSS = 250 * MiB
_CHECKPOINT_EVERY = 1000
_EDGE_NAMES = ("benchPrev", "benchPrev2")


class BenchNode(Item):
    """A synthetic item with a natural key and a few properties."""

    key_fields: ClassVar[tuple[str, ...]] = ("externalId",)

    externalId: str | None = None
    benchName: str | None = None
    benchValue: int | None = None
    benchScore: float | None = None


class BenchSmall(Item):
    """The smallest useful item: a natural key and one number."""

    key_fields: ClassVar[tuple[str, ...]] = ("externalId",)

    externalId: str | None = None
    benchValue: int | None = None


class SyntheticOptions(BaseModel):
    count: int = 1000
    edges: bool = True
    """Two edges per item (to the one and the two before it) — or none."""
    small: bool = False
    """BenchSmall items instead of BenchNode."""


def _external_id(i: int) -> str:
    return f"bench-{i}"


def node(i: int) -> BenchNode:
    return BenchNode(
        externalId=_external_id(i),
        benchName=f"Synthetic node {i}",
        benchValue=i,
        benchScore=i / 3.0,
    )


def records(options: SyntheticOptions, start: int = 0) -> Iterator[Record]:
    """Item i, then its edges to items i-1 and i-2 (clamped at 0), checkpoints every 1000."""
    ids: list[str] = []
    for i in range(start, options.count):
        if options.small:
            yield BenchSmall(externalId=_external_id(i), benchValue=i)
        else:
            item = node(i)
            ids.append(item.ensure_id())
            yield item
            if options.edges:
                for k, name in enumerate(_EDGE_NAMES):
                    yield Edge(ids[-1], name, ids[max(0, len(ids) - 2 - k)])
            if len(ids) > 4:
                del ids[:-4]
        if (i + 1) % _CHECKPOINT_EVERY == 0 or i + 1 == options.count:
            yield Checkpoint({"next": i + 1})


class Synthetic(Connector[SyntheticOptions]):
    """Synthetic records, as fast as a generator can make them."""

    name = "bench-synthetic"
    options_model = SyntheticOptions
    item_types = (BenchNode, BenchSmall)

    def fetch(self, ctx: RunContext[SyntheticOptions]) -> Iterator[Record]:
        state = ctx.checkpoint() or {}
        yield from records(ctx.options, int(state.get("next", 0)))


@dataclass(frozen=True)
class Measured:
    records: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds


def _counts(count: int) -> tuple[int, int]:
    return count, 2 * count


@asynccontextmanager
async def _pod(directory: Path, url: str | None) -> AsyncIterator[PodClient]:
    """A fresh embedded Pod, or a fresh owner in the Pod served at ``url``."""
    if url is None:
        async with local_pod(directory) as client:
            yield client
        return
    keys = load_keys(directory)
    async with PodClient(url, keys.owner_key, ClientAuth(keys.database_key)) as client:
        await client.create_account()
        yield client


async def engine_run(
    directory: Path, count: int, settings: EngineSettings | None = None, url: str | None = None
) -> Measured:
    """The engine importing ``count`` items and ``2 * count`` edges into a fresh Pod."""
    async with _pod(directory, url) as client:
        with stopwatch() as watch:
            result: RunResult = await run_connector(
                Synthetic(),
                SyntheticOptions(count=count),
                client=client,
                data_dir=directory,
                settings=settings,
            )
    items, edges = _counts(count)
    if result.error or result.stats.created < items or result.stats.edges_created != edges:
        raise RuntimeError(
            f"engine run incomplete: {result.stats.summary()}, error {result.error!r}"
        )
    return Measured(items + edges, watch.seconds)


Bulk = tuple[list[dict[str, Any]], list[dict[str, str]]]
"""The items and the edges of one bulk request."""


def prebuilt_bulks(count: int, batch: int) -> list[Bulk]:
    """The synthetic records as the engine would batch them: ``batch`` items + edges each."""
    bulks: list[Bulk] = []
    items: list[dict[str, Any]] = []
    edges: list[dict[str, str]] = []
    for record in records(SyntheticOptions(count=count)):
        if isinstance(record, Item):
            items.append(record.to_pod())
        elif isinstance(record, Edge):
            edges.append(
                {"_source": record.source_id, "_target": record.target_id, "_name": record.name}
            )
        else:
            continue
        if len(items) + len(edges) >= batch:
            bulks.append((items, edges))
            items, edges = [], []
    if items or edges:
        bulks.append((items, edges))
    return bulks


async def floor_run(directory: Path, count: int, batch: int, url: str | None = None) -> Measured:
    """The client alone: the same records in pre-built bulks, back to back."""
    bulks = prebuilt_bulks(count, batch)
    async with _pod(directory, url) as client:
        await client.add_schema({BenchNode.item_type: {"properties": BenchNode.pod_schema()}})
        with stopwatch() as watch:
            for items, edges in bulks:
                await client.bulk(create_items=items, create_edges=edges)
    return Measured(sum(len(i) + len(e) for i, e in bulks), watch.seconds)


async def naive_run(directory: Path, count: int, url: str | None = None) -> Measured:
    """One request per item and per edge, the tutorial way."""
    async with _pod(directory, url) as client:
        await client.add_schema({BenchNode.item_type: {"properties": BenchNode.pod_schema()}})
        done = 0
        with stopwatch() as watch:
            for record in records(SyntheticOptions(count=count)):
                if isinstance(record, Item):
                    await client.create_item(record.to_pod())
                elif isinstance(record, Edge):
                    await client.create_edge(record.source_id, record.target_id, record.name)
                else:
                    continue
                done += 1
    return Measured(done, watch.seconds)


def _fastest(runs: list[Measured]) -> Measured:
    return min(runs, key=lambda run: run.seconds)


def million_child(count: int, data_dir: Path) -> None:
    """In the child process: import ``count`` small items, print the summary."""

    async def go() -> RunResult:
        async with local_pod(data_dir) as client:
            return await run_connector(
                Synthetic(),
                SyntheticOptions(count=count, edges=False, small=True),
                client=client,
                data_dir=data_dir,
            )

    result = anyio.run(go)
    print(result.summary())
    if result.error or result.stats.created < count:
        raise SystemExit(1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = bench_parser(__doc__ or "")
    parser.add_argument("--count", type=int, help="items for the engine vs floor runs")
    parser.add_argument("--naive-count", type=int, help="items for the naive importer")
    parser.add_argument("--grid-count", type=int, help="items per settings-grid run")
    parser.add_argument("--small-count", type=int, help="small items for the memory run")
    parser.add_argument("--child-small", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_small is not None:
        million_child(args.child_small, args.child_dir)
        return 0
    quick = args.quick
    count = args.count or (3_000 if quick else 100_000)
    naive_count = args.naive_count or (300 if quick else 2_000)
    grid_count = args.grid_count or (1_000 if quick else 20_000)
    small_count = args.small_count or (50_000 if quick else 1_000_000)
    default = EngineSettings()
    items, edges = _counts(count)
    print(
        f"engine: {items:,} items + {edges:,} edges; naive on {naive_count:,} + "
        f"{2 * naive_count:,}; grid on {grid_count:,} + {2 * grid_count:,}; "
        f"{small_count:,} small items for memory"
    )
    print(machine_line(), flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        root = Path(tmp)
        # Floor and engine run twice, taking turns, and each keeps its faster
        # run: one run of a few seconds is at the mercy of anything else on
        # the machine, and the floor's best is the stricter baseline.
        floors, engines, socket_floors, socket_engines = [], [], [], []
        for turn in range(2):
            floors.append(
                anyio.run(floor_run, root / f"floor-{turn}", count, default.batch_records)
            )
            engines.append(anyio.run(engine_run, root / f"engine-{turn}", count, None))
        with served_pod(root / "served") as served:
            for turn in range(2):
                socket_floors.append(
                    anyio.run(
                        floor_run,
                        root / f"socket-floor-{turn}",
                        count,
                        default.batch_records,
                        served.url,
                    )
                )
                socket_engines.append(
                    anyio.run(engine_run, root / f"socket-engine-{turn}", count, None, served.url)
                )
            socket_naive = anyio.run(naive_run, root / "socket-naive", naive_count, served.url)
        floor, engine = _fastest(floors), _fastest(engines)
        socket_floor, socket_engine = _fastest(socket_floors), _fastest(socket_engines)
        naive = anyio.run(naive_run, root / "naive", naive_count)
        print_table(
            f"Engine vs floor vs naive ({items + edges:,} records; naive measured on "
            f"{naive.records:,} records and extrapolated)",
            ["path", "records/s", "seconds for all records", "vs engine"],
            [
                [
                    "floor: pre-built bulks, back to back",
                    floor.rate,
                    floor.seconds,
                    floor.rate / engine.rate,
                ],
                [
                    f"engine (batch_records={default.batch_records}, "
                    f"max_in_flight={default.max_in_flight})",
                    engine.rate,
                    engine.seconds,
                    1.0,
                ],
                [
                    "naive: one request per record (extrapolated)",
                    naive.rate,
                    (items + edges) / naive.rate,
                    naive.rate / engine.rate,
                ],
            ],
        )
        print_table(
            "Over a socket: `importer pod serve` in another process (engine and Pod run "
            "side by side instead of sharing one interpreter)",
            ["path", "records/s", "seconds", "vs engine"],
            [
                [
                    "floor: pre-built bulks, back to back",
                    socket_floor.rate,
                    socket_floor.seconds,
                    socket_floor.rate / socket_engine.rate,
                ],
                ["engine", socket_engine.rate, socket_engine.seconds, 1.0],
                [
                    "naive: one request per record (extrapolated)",
                    socket_naive.rate,
                    (items + edges) / socket_naive.rate,
                    socket_naive.rate / socket_engine.rate,
                ],
            ],
        )

        grid_rows = []
        best: tuple[float, int, int] | None = None
        for batch in (250, 500, 1000, 2000):
            for in_flight in (1, 2, 4):
                settings = EngineSettings(batch_records=batch, max_in_flight=in_flight)
                run = anyio.run(
                    engine_run, root / f"grid-{batch}-{in_flight}", grid_count, settings
                )
                grid_rows.append([batch, in_flight, run.rate, run.seconds])
                if best is None or run.rate > best[0]:
                    best = (run.rate, batch, in_flight)
        assert best is not None
        for row in grid_rows:
            row.append(row[2] / best[0])
        print_table(
            f"EngineSettings grid ({grid_count:,} items + {2 * grid_count:,} edges per run)",
            ["batch_records", "max_in_flight", "records/s", "seconds", "vs best"],
            grid_rows,
        )
        print(
            f"\nbest: batch_records={best[1]}, max_in_flight={best[2]} ({best[0]:,.0f} records/s)"
        )

        small = run_child(
            [
                sys.executable,
                "-m",
                "benchmarks.engine",
                "--child-small",
                str(small_count),
                "--child-dir",
                str(root / "small"),
            ],
            env=child_env(),
        ).check("the small-items import")
        print(
            f"\n{small_count:,} small items in a child process: {small.seconds:.1f} s "
            f"({small_count / small.seconds:,.0f} items/s), peak RSS "
            f"{small.peak_rss / MiB:.0f} MiB; {small.stdout.strip()}\n"
        )

    report_ratio("engine.vs_floor", engine.rate / floor.rate, ">=", _GOAL_VS_FLOOR)
    report_ratio(
        "engine.vs_floor_socket", socket_engine.rate / socket_floor.rate, ">=", _GOAL_VS_FLOOR
    )
    report_ratio("engine.vs_naive", engine.rate / naive.rate, ">=", _GOAL_VS_NAIVE)
    report_ratio(
        "engine.vs_naive_socket", socket_engine.rate / socket_naive.rate, ">=", _GOAL_VS_NAIVE
    )
    report_ratio(
        "engine.small_items_peak_rss",
        small.peak_rss / MiB,
        "<",
        _GOAL_MILLION_RSS / MiB,
        unit="MiB",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
