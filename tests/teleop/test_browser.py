"""The browser device: a Python WebSocket client as the page, then the real page in Chromium."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from apprentice.data.store import DemoFile
from apprentice.errors import ApprenticeError
from apprentice.teleop.browser import HEADLESS_CHROMIUM_FLAGS, BrowserDevice, find_chromium
from apprentice.teleop.devices import Device, TeleopStatus
from apprentice.teleop.run import TeleopConfig, run_teleop


@pytest.fixture
def device() -> Iterator[BrowserDevice]:
    dev = BrowserDevice(port=0)
    dev.start()
    yield dev
    dev.close()


def open_page(dev: BrowserDevice) -> tuple[ClientConnection, dict[str, Any]]:
    ws = connect(f"ws://127.0.0.1:{dev.port}/ws", open_timeout=10, legacy=True)
    hello = json.loads(ws.recv(timeout=10))
    return ws, hello


def wait_for(predicate: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_commands_in_json_and_msgpack_reach_poll(device: BrowserDevice) -> None:
    ws, hello = open_page(device)
    assert hello["type"] == "hello" and hello["motion_keys"]["w"] == ["pos", 1, 1.0]
    wait_for(lambda: device.connected, "the page to count as connected")
    stamp = time.time() * 1e3
    ws.send(
        json.dumps(
            {
                "type": "command",
                "seq": 0,
                "t": stamp,
                "pos": [0.5, 0, 2.0],  # out of range: clipped, not refused
                "rot": [0, 0, -1],
                "gripper": 1,
                "buttons": ["start"],
            }
        )
    )
    wait_for(lambda: device.received["command"] == 1, "the JSON command")
    cmd = device.poll()
    np.testing.assert_allclose(cmd.delta_pos, [0.5, 0, 1.0])
    np.testing.assert_allclose(cmd.delta_rot, [0, 0, -1])
    assert cmd.gripper == 1.0 and cmd.buttons == {"start"}
    assert cmd.stamps == pytest.approx((stamp / 1e3,))
    assert device.poll().buttons == frozenset()  # a press is reported once
    ws.send(msgpack.packb({"type": "command", "seq": 1, "pos": [0, 1, 0], "buttons": ["stop"]}))
    wait_for(lambda: device.received["command"] == 2, "the msgpack command")
    cmd = device.poll()
    np.testing.assert_allclose(cmd.delta_pos, [0, 1, 0])
    assert cmd.buttons == {"stop"} and cmd.stamps == ()
    ws.send(json.dumps({"type": "ping", "t": 123.0}))
    pong = json.loads(ws.recv(timeout=10))
    assert pong["type"] == "pong" and pong["t"] == 123.0 and pong["server_t"] > 0
    ws.close()
    wait_for(lambda: not device.connected, "the closed page to disconnect")
    np.testing.assert_array_equal(device.poll().delta_pos, [0, 0, 0])  # no page, no motion


def test_a_silent_page_stops_the_motion() -> None:
    dev = BrowserDevice(port=0, stale_s=0.2)
    dev.start()
    try:
        ws, _ = open_page(dev)
        ws.send(json.dumps({"type": "command", "seq": 0, "pos": [1, 0, 0], "gripper": 1}))
        wait_for(lambda: dev.received["command"] == 1, "the command")
        np.testing.assert_allclose(dev.poll().delta_pos, [1, 0, 0])
        time.sleep(0.3)  # no heartbeat: the page froze
        cmd = dev.poll()
        np.testing.assert_array_equal(cmd.delta_pos, [0, 0, 0])
        assert cmd.gripper == 1.0  # the gripper holds what it holds
        ws.close()
    finally:
        dev.close()


def test_malformed_messages_are_rejected_counted_and_survived(device: BrowserDevice) -> None:
    ws, _ = open_page(device)
    bad: list[str | bytes] = [
        "not json",
        b"\xc1\xff garbage",
        json.dumps([1, 2, 3]),
        json.dumps({"type": "teleport"}),
        json.dumps({"type": "command", "seq": 1, "pos": [1, 2]}),
        '{"type": "command", "seq": 2, "rot": [NaN, 0, 0]}',
        json.dumps({"type": "command", "seq": 3, "buttons": ["self_destruct"]}),
        json.dumps({"type": "command", "seq": "four"}),
    ]
    kinds = []
    for frame in bad:
        ws.send(frame)
        reply = json.loads(ws.recv(timeout=10))
        assert reply["type"] == "error"
        kinds.append(reply["kind"])
    assert kinds == [
        "not_decodable",
        "not_decodable",
        "not_a_map",
        "unknown_type",
        "bad_field",
        "not_finite",
        "unknown_button",
        "bad_field",
    ]
    assert sum(device.rejected.values()) == len(bad) and device.received["command"] == 0
    ws.send(json.dumps({"type": "command", "seq": 5, "pos": [0, 0, 1]}))  # still usable
    wait_for(lambda: device.received["command"] == 1, "a good command after bad ones")
    np.testing.assert_allclose(device.poll().delta_pos, [0, 0, 1])
    ws.send(b"x" * (device.max_message_bytes + 1))  # oversized: that page is closed (1009)
    with pytest.raises(ConnectionClosed):
        while True:
            ws.recv(timeout=10)
    wait_for(lambda: device.rejected["oversized"] == 1, "the oversized frame to be counted")


def test_frames_and_status_reach_the_page_and_newer_page_takes_over(
    device: BrowserDevice,
) -> None:
    first, _ = open_page(device)
    wait_for(lambda: device.wants_frames, "a page that wants frames")
    frame = np.zeros((32, 32, 3), dtype=np.uint8)
    frame[:, :16] = 255
    device.show(TeleopStatus("recording", step=3, kept=1), frame)
    status = json.loads(first.recv(timeout=10))
    jpeg = first.recv(timeout=10)
    assert status["type"] == "status" and status["state"] == "recording" and status["kept"] == 1
    assert isinstance(jpeg, bytes) and jpeg[:2] == b"\xff\xd8"  # a JPEG
    second, _ = open_page(device)
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            first.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
    assert device.connected  # the newer page drives
    second.close()
    wait_for(lambda: not device.connected, "no page left")


def test_page_is_served_and_port_in_use_is_named(device: BrowserDevice) -> None:
    html = urllib.request.urlopen(device.url, timeout=10).read().decode()
    assert '<script src="/teleop.js">' in html
    js = urllib.request.urlopen(device.url + "teleop.js", timeout=10).read().decode()
    assert "new WebSocket" in js
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(device.url + "nope", timeout=10)
    assert err.value.code == 404
    busy = BrowserDevice(port=device.port)
    with pytest.raises(ApprenticeError, match=f"port {device.port} on 127.0.0.1 is already in use"):
        busy.start()
    busy.close()  # safe after a failed start (the CLI always closes the device)


# --- the page itself, in headless Chromium ---------------------------------------------------


def test_page_in_headless_chromium_records_a_demo(tmp_path: Path) -> None:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run does)")
    from playwright import sync_api  # the dev extra

    out = tmp_path / "browser.hdf5"
    cfg = TeleopConfig(
        task="lift", out=str(out), operator="grace", max_demos=1, frame_size=64, wait_s=60.0
    )
    ready = threading.Event()
    urls: list[str] = []
    result: list[Any] = []

    def on_ready(dev: Device) -> None:
        urls.append(str(getattr(dev, "url", "")))
        ready.set()

    statuses: list[TeleopStatus] = []

    def session() -> None:
        try:
            result.append(
                run_teleop(cfg, BrowserDevice(port=0), on_ready=on_ready, on_status=statuses.append)
            )
        except BaseException as exc:
            result.append(exc)
            ready.set()

    thread = threading.Thread(target=session, daemon=True)
    thread.start()
    assert ready.wait(60) and urls, result
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=list(HEADLESS_CHROMIUM_FLAGS))
        try:
            page = browser.new_page()
            page.goto(urls[0])
            page.wait_for_function("document.getElementById('conn').textContent === 'connected'")
            page.wait_for_function("Number(document.getElementById('frames').textContent) > 0")
            assert page.inner_text("#state") == "idle"
            page.keyboard.press("b")  # start, from the keyboard
            page.wait_for_function("document.getElementById('state').textContent === 'recording'")
            page.keyboard.down("r")  # up, held for a few control steps
            page.wait_for_function("Number(document.getElementById('step').textContent) >= 8")
            page.keyboard.up("r")
            box = page.locator("#pad-xy").bounding_box()  # drag the touch pad to the right
            assert box is not None
            y = box["y"] + box["height"] / 2
            page.mouse.move(box["x"] + box["width"] / 2, y)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] - 2, y, steps=3)
            page.wait_for_function("Number(document.getElementById('step').textContent) >= 14")
            page.mouse.up()
            page.click("#gripper")  # close, with the on-screen button
            page.wait_for_function("Number(document.getElementById('step').textContent) >= 18")
            page.click("#stop")  # stop & keep: max_demos=1 ends the session
            thread.join(60)
        finally:
            browser.close()
    assert not thread.is_alive()
    r = result[0]
    assert not isinstance(r, BaseException), r
    assert r.kept == ["demo_0"] and r.end_reason == "1 demos kept"
    assert r.latencies_s  # the page's stamped inputs reached task.step
    with DemoFile(out) as f:
        attrs = f.attrs("demo_0")
        actions = f.read_field("demo_0", "actions")
    assert attrs["device"] == "browser" and attrs["operator"] == "grace"
    assert attrs["source"] == "teleop:browser"
    # Loose bounds: under load the page samples a drag or a held key part-way.
    assert np.any(actions[:, 2] > 0.2)  # the held "r" moved the gripper up
    # The pad pushed right: the operator's right is world +y for the agentview camera.
    assert np.any(actions[:, 1] > 0.2) and np.all(np.abs(actions[:, 0]) < 0.1)
    assert actions[0, 6] == -1.0 and actions[-1, 6] == 1.0  # opened, then closed from the page
    assert any("demo_0 kept" in s.message for s in statuses)
