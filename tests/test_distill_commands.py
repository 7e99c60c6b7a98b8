"""The training commands' error path: a phase raises CommandError, ``cli.main``
prints one line and returns its exit code."""

from __future__ import annotations

import pytest

from model_zoo import registry
from tagger import cli
from tagger.distill import phases
from tagger.distill.phases import CommandError


@pytest.fixture
def no_models(tmp_path, monkeypatch):
    monkeypatch.setenv(registry.ENV_MODEL_DIR, str(tmp_path / "models"))


def _train_key(tmp_path, *extra) -> int:
    return cli.main(["train-key", str(tmp_path), "--cache", str(tmp_path / "cache"),
                     "--device", "cpu", "--threads", "1", *extra])


def test_invalid_name_is_one_line_and_exit_2(tmp_path, no_models, capsys):
    assert _train_key(tmp_path, "--name", "no spaces") == 2
    err = capsys.readouterr().err
    assert err.startswith("keychords: error: invalid model name 'no spaces'")
    assert err.count("\n") == 1


def test_empty_library_is_one_line_and_exit_2(tmp_path, no_models, capsys):
    assert _train_key(tmp_path, "--name", "k", "-q") == 2
    assert capsys.readouterr().err == "keychords: error: no audio files found\n"


@pytest.mark.parametrize("error, code, err", [
    (CommandError("boom"), 2, "keychords: error: boom\n"),
    (CommandError("no usable tracks", code=1), 1, "keychords: error: no usable tracks\n"),
    (CommandError("", code=130), 130, ""),       # an interrupted run: quiet
])
def test_command_error_in_a_phase(tmp_path, no_models, capsys, monkeypatch, error, code, err):
    def fail(*args, **kwargs):
        raise error
    monkeypatch.setattr(phases, "prepare_library", fail)
    assert _train_key(tmp_path, "--name", "k") == code
    captured = capsys.readouterr()
    assert captured.err == err and captured.out == ""


def test_training_errors_turns_interrupt_into_exit_130():
    from tagger.distill.loop import TrainError
    with pytest.raises(CommandError) as e, phases.training_errors():
        raise KeyboardInterrupt
    assert (e.value.message, e.value.code) == ("", 130)
    with pytest.raises(CommandError) as e, phases.training_errors():
        raise TrainError("no training tracks")
    assert (e.value.message, e.value.code) == ("no training tracks", 2)
