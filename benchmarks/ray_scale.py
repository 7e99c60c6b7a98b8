"""Ray Data scaling, simulated on one machine: N one-core decoding "nodes"
and G fake-GPU model "nodes" (``ray.cluster_utils.Cluster``).

    python benchmarks/ray_scale.py [--nodes 1 2] [--gpu-nodes 1] [--tracks 12]
        [--seconds 60] [--data DIR]

For each N, runs ``keychords tag --ray``'s dataset (:mod:`tagger.ray_run`)
over the same synthetic tracks and prints: wall time, tracks/s, x realtime,
the object stores' peak use (all nodes, from /dev/shm) and the bytes that cross
from the decoding stage to the model stage per track (packed fp16 features;
the decoded samples would be ``4 x 22050`` bytes per second), next to the
throughput the README's model predicts from each stage's speed on one core,
measured here first. All "nodes" share this machine's cores, so the
simulation shows how the pipeline spreads work and what it moves, not what
real nodes would add; see the README's "Large libraries: Ray" for the
model of a real cluster. Wall times include starting the workers and
loading the models: use enough audio that they do not dominate.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MB = 2**20


def make_tracks(data: Path, n: int, seconds: float) -> list[str]:
    from benchmarks.throughput import encode, synth_music
    data.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = data / f"track{i:03d}-{int(seconds)}s.flac"
        if not p.exists():
            encode(p, synth_music(seconds, 22050, seed=i), 22050, "flac", "flac")
        paths.append(str(p))
    return paths


def feature_bytes(path: str, cards) -> tuple[int, int]:
    """``(packed feature bytes, decoded float32 sample bytes)`` of one track."""
    from tagger.engine import FeatureExtractor
    from tagger.packed import pack
    from tagger.workers import decode_messages
    fx = FeatureExtractor(cards)
    track = fx.start(path)
    for kind, payload in decode_messages(path, fx.sample_rate):
        if kind == "chunk":
            fx.feed(track, payload)
    return len(pack(fx.finish(track))), 4 * track.n_samples


def stage_rates(paths: list[str], cards) -> tuple[float, float]:
    """``(d, g)``: x realtime of decoding + features, and of the model stage,
    each on one core of this machine (one torch thread), as now loaded."""
    import torch

    from tagger import pipeline
    from tagger.engine import FeatureExtractor
    from tagger.ray_stages import ModelStage, columns, features_row
    torch.set_num_threads(1)
    fx = FeatureExtractor(cards)
    start = time.perf_counter()
    rows = [features_row(fx, {"path": p, "size": 0, "mtime_ns": 0}) for p in paths]
    decode_s = time.perf_counter() - start
    model = ModelStage(*cards, pipeline.Options(), batch_size=len(rows))
    model(columns(rows[:1]))                       # warm up
    start = time.perf_counter()
    model(columns(rows))
    model_s = time.perf_counter() - start
    audio = sum(r["n_samples"] for r in rows) / fx.sample_rate
    return audio / decode_s, audio / model_s


def predicted(nodes: int, gpu_nodes: int, d: float, g: float, cores: int) -> float:
    """The README's model on the simulated cluster: the smallest of the
    decoding term, the model term and, since all "nodes" share this
    machine's cores, what the cores can do when every track needs both."""
    return min(nodes * d, gpu_nodes * g, cores / (1 / d + 1 / g))


def shm_used() -> int:
    """Bytes in use in /dev/shm, where the object stores of all the simulated
    nodes live. A store's pages stay there once touched (freed objects are
    reused, not returned), so the growth over a run is the stores' peak."""
    st = os.statvfs("/dev/shm")
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def measure(nodes: int, gpu_nodes: int, paths: list[str], cards) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    from tagger import pipeline, ray_run
    shm_before = shm_used()
    store = {"object_store_memory": 200 * MB}
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 0, "include_dashboard": False, **store})
    for _ in range(nodes):
        cluster.add_node(num_cpus=1, **store)
    for _ in range(gpu_nodes):
        cluster.add_node(num_cpus=1, num_gpus=1, **store)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, logging_level="WARNING")
    entries, _ = ray_run.manifest(paths, "", ray_run.model_ids(*cards), force=True)
    with tempfile.TemporaryDirectory() as results:
        opts = ray_run.RayOptions(results=results, flush_rows=10**9)
        start = time.monotonic()
        rows = list(ray_run.run(entries, *cards, pipeline.Options(), opts))
        wall = time.monotonic() - start
    peak = shm_used() - shm_before
    ray.shutdown()
    cluster.shutdown()
    audio = sum(r["duration"] for r in rows)
    return {"nodes": nodes, "gpu_nodes": gpu_nodes, "wall": wall, "tracks_s": len(rows) / wall,
            "realtime": audio / wall, "peak_mb": peak / MB,
            "failed": sum(r["status"] != "ok" for r in rows)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--gpu-nodes", type=int, default=1)
    ap.add_argument("--tracks", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "kc-ray-scale")
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from tagger.engine import resolve_model
    cards = (resolve_model("chord", None), resolve_model("key", None))
    paths = make_tracks(args.data, args.tracks, args.seconds)
    packed, raw = feature_bytes(paths[0], cards)
    print(f"{args.tracks} tracks of {args.seconds:.0f} s; per track: {packed / MB:.2f} MB "
          f"packed features cross to the model stage (decoded samples: {raw / MB:.2f} MB)")
    d, g = stage_rates(paths[:4], cards)
    cores = os.cpu_count() or 1
    print(f"one core here: decoding + features {d:.0f}x realtime, model stage on a CPU "
          f"(a fake GPU) {g:.0f}x; {cores} cores")
    print("decode nodes  fake-GPU nodes  wall s  tracks/s  x realtime  model predicts"
          "  store peak MiB  failed")
    for n in args.nodes:
        r = measure(n, args.gpu_nodes, paths, cards)
        model = predicted(n, args.gpu_nodes, d, g, cores)
        print(f"{r['nodes']:>12}  {r['gpu_nodes']:>14}  {r['wall']:>6.1f}  {r['tracks_s']:>8.2f}"
              f"  {r['realtime']:>10.1f}  {model:>14.0f}  {r['peak_mb']:>14.1f}"
              f"  {r['failed']:>6}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
