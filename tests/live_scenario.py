"""The live camera end to end, in Chromium with a fake camera. Run it only inside a network
namespace of its own (``unshare -n``; ``tests/test_live.py`` does): WebRTC's peers then find
each other on a private address on loopback and nothing leaves the machine (see
``shared/notes/webrtc-in-tests.md``). Prints one line ``RESULT {json}``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_e2e import CHROMIUM, Server  # noqa: E402

READOUT = re.compile(r"(\d+) faces? · ([\d.]+) fps · face \d+: (angry|disgust|fear|happy|sad|surprise|neutral) \d+%")


def y4m_clip(path: Path, seconds: float = 4.0, fps: int = 15) -> Path:
    """scikit-image's astronaut, gently moving, as a 640x480 Y4M (4:2:0) clip Chromium can play."""
    import cv2
    import numpy as np
    from skimage import data as skimage_data

    photo = cv2.resize(cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR), (480, 480))
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W640 H480 F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(int(seconds * fps)):
            frame = np.full((480, 640, 3), 90, np.uint8)
            x = 80 + int(20 * np.sin(i / fps * 2))
            frame[:, x:x + 480] = photo
            out.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


def main() -> dict:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", "10.123.0.1/32", "dev", "lo"], check=True)
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="fer-live-"))
    clip = y4m_clip(work / "astronaut.y4m")
    srv = Server(work / "data", work / "server.log").start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--disable-background-networking", "--disable-component-update",
                "--disable-dev-shm-usage", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-video-capture={clip}", "--allow-loopback-in-peer-connection",
                "--disable-features=WebRtcHideLocalIpsWithMdns"])
            ctx = browser.new_context(permissions=["camera"], viewport={"width": 1280, "height": 900})
            page = ctx.new_page()
            page.set_default_timeout(120_000)
            page.goto(f"{srv.url}/predict")
            page.get_by_test_id("stApp").wait_for()
            page.get_by_text("Live camera", exact=True).click()
            try:
                page.get_by_test_id("stCustomComponentV1").first.wait_for()
                start = page.frame_locator('[data-testid="stCustomComponentV1"]').first.locator(
                    "button", has_text=re.compile("start", re.I)).first
                start.click()
            except Exception:
                page.screenshot(path="/tmp/live-fail.png", full_page=True)
                Path("/tmp/live-fail.html").write_text(page.content())
                raise
            deadline, shown, seen = time.time() + 150, "", []
            while time.time() < deadline:
                shown = page.get_by_test_id("stMain").inner_text()
                found = READOUT.search(shown)
                if found:
                    seen.append(found.group(0))
                    faces, fps = int(found.group(1)), float(found.group(2))
                    # refreshed: three readings, a second or more apart, the last with the face at a
                    # measured rate (on a busy machine the first frames can take longer than the rate window)
                    if len(seen) >= 3 and faces >= 1 and fps > 0:
                        break
                page.wait_for_timeout(1000)
            page.screenshot(path=str(work / "live.png"))
            stop = page.frame_locator('[data-testid="stCustomComponentV1"]').first.locator(
                "button", has_text=re.compile("stop", re.I)).first
            stopped = False
            if stop.count():
                stop.click()
                stopped = True
            errors = page.get_by_test_id("stException").count()
            browser.close()
        return {"readouts": seen, "last_text": shown[-600:], "exceptions": errors, "stopped": stopped,
                "log": srv.log.read_text(errors="replace")[-2000:]}
    finally:
        srv.stop()


if __name__ == "__main__":
    try:
        result = main()
    except Exception as exc:  # reported to the test, which fails with it
        result = {"error": f"{type(exc).__name__}: {exc}"}
    print("RESULT " + json.dumps(result), flush=True)
