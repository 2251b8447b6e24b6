import json
import subprocess
import sys

from fer_core.cli import main


def test_data_summary_json(capsys):
    assert main(["data", "summary", "demo", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["source"] == "demo" and out["num_images"] == 3500
    assert set(out["counts"]) == {"Training", "PublicTest", "PrivateTest"}
    assert out["counts"]["Training"]["happy"] == 400


def test_data_summary_table_and_merge(capsys):
    assert main(["data", "summary", "demo", "--merge", "disgust=angry"]) == 0
    out = capsys.readouterr().out
    assert "6 classes" in out and "disgust" not in out.split("\n", 1)[1]
    assert "total" in out and "3,500" in out


def test_bad_source_is_one_line_without_traceback(tmp_path):
    bad = tmp_path / "x.csv"
    bad.write_text("foo,bar\n1,2\n")
    proc = subprocess.run([sys.executable, "-m", "fer_core", "data", "summary", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "missing column(s) 'emotion', 'pixels'" in proc.stderr


def test_commands_print_one_device_line_instead_of_tensorflows_start_up_noise(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell has it
    env.update(FER_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(root))
    proc = subprocess.run([sys.executable, "-m", "fer_core", "train", "--data", "demo:10", "--arch", "tiny",
                           "--epochs", "1", "--out", str(tmp_path / "run")], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith("training on CPU (")
    for noise in ("cuInit", "CUDA", "rebuild TensorFlow", "absl", "oneDNN"):
        assert noise not in proc.stderr, proc.stderr


def test_models_table_has_a_header_and_says_which_configuration_it_counts(capsys):
    from fer_core.models.build import count_params

    assert main(["models"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["name", "parameters", "input", "description"]
    (vgg,) = [line for line in out if line.startswith("fer-vgg ")]
    assert vgg.split()[1:3] == [f"{count_params('fer-vgg', crop=48):,}", "48x48"]
    assert count_params("fer-vgg", crop=40) < count_params("fer-vgg", crop=48)  # the count depends on the crop
    assert any("own configuration" in line for line in out)
