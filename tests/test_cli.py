import json
import subprocess
import sys

from vertebra.cli import main


def test_list_prints_the_model_table(capsys):
    assert main(["list", "resnet*"]) == 0
    out = capsys.readouterr().out
    assert "resnet50" in out and "25.56M" in out and "4.09G" in out and "se_resnet50" not in out


def test_list_and_info_as_json(capsys):
    assert main(["list", "senet*", "--json"]) == 0
    assert [c["name"] for c in json.loads(capsys.readouterr().out)] == ["senet154"]
    assert main(["info", "resnext50_32x4d", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["card"]["params"] == 25_028_904


def test_smoke_runs_the_models(capsys):
    assert main(["smoke", "resnet18", "--size", "32"]) == 0
    assert "(1, 1000)" in capsys.readouterr().out


def test_errors_are_one_line_and_a_nonzero_exit():
    for args in (["info", "resnet5"], ["list", "zzz*"]):
        run = subprocess.run([sys.executable, "-m", "vertebra", *args], capture_output=True, text=True)
        assert run.returncode == 2
        assert run.stderr.count("\n") == 1 and "error:" in run.stderr and "Traceback" not in run.stderr


def test_info_layers_and_guidelines_as_json(capsys):
    assert main(["info", "resnet18", "--layers", "--guidelines", "--input-size", "32", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["card"]["name"] == "resnet18" and data["profile"]["params"] == 11_689_512
    assert data["profile"]["input_size"] == [32, 32] and data["guidelines"]["summary"]["G2 group convs"] == 0


def test_bench_prints_json_lines(capsys):
    assert main(["bench", "resnet18", "--input-size", "32", "--repeats", "2", "--warmup", "1",
                 "--batch-size", "2", "--threads", "1", "--json"]) == 0
    row = json.loads(capsys.readouterr().out.strip())
    assert row["model"] == "resnet18" and row["batch_size"] == 2 and row["threads"] == 1
    assert row["images_per_s"] > 0 and row["latency_ms"] > 0


def test_bad_sizes_and_options_are_one_line_errors():
    for args in (["bench", "resnet18", "--batch-size", "0"], ["info", "resnet18", "--layers", "--input-size", "8"],
                 ["bench", "nosuchnet"]):
        run = subprocess.run([sys.executable, "-m", "vertebra", *args], capture_output=True, text=True)
        assert run.returncode == 2 and "Traceback" not in run.stderr
        assert run.stderr.strip().splitlines()[-1].startswith(("vertebra", "usage")) or "error:" in run.stderr


def test_gates_draws_a_heat_map(tmp_path, capsys):
    out = tmp_path / "gates.png"
    assert main(["gates", "lstm_classifier", "--index", "3", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert main(["gates", "resnet18", "--out", str(out)]) == 2
