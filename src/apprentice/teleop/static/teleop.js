// apprentice teleop page: turns keys, touch pads, device tilt and WebXR controller poses into
// commands for apprentice.teleop.browser, and shows the simulator's camera and status.
//
// A command is the operator's current input *state* (motion in [-1, 1] on x right, y away,
// z up; rotation rates about the same axes; the gripper -1 open .. +1 closed) plus the
// buttons pressed since the last message. It is sent at once on every input event, stamped
// with the event's time on the server's clock (aligned by ping/pong), and re-sent at the
// control rate unstamped, so that a lost frame never leaves the robot moving.
//
// For a task of several arms (the hello names them) the command carries one {pos, rot,
// gripper} per arm in "arms": the keys, touch pads and tilt drive the arm in focus (Tab or the
// arm button moves the focus), and each WebXR controller drives its own arm (the left hand's
// the first arm, the right hand's the second).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const clip = (v) => Math.max(-1, Math.min(1, v));
  const zero = () => [0, 0, 0];
  const restXR = () => ({ pos: zero(), rot: zero(), gripper: null });

  const s = {
    ws: null,
    seq: 0,
    rate: 20,
    offset: 0, // server clock - local clock, ms
    bestRtt: Infinity,
    motionKeys: {},
    buttonKeys: {},
    gripperKey: " ",
    focusKey: "Tab",
    arms: ["arm"],
    focus: 0, // the arm the keys, touch pads and tilt drive
    held: new Set(),
    grippers: [-1], // per arm
    buttons: new Set(),
    touch: { pos: zero(), rot: zero() },
    tilt: { on: false, ref: null, pos: zero() },
    xr: [restXR()], // per arm
    frames: 0,
    errors: 0,
    frameUrl: null,
  };

  // ---- clock: event times on the server's clock --------------------------------------------
  const localNow = () => performance.timeOrigin + performance.now();
  const eventTime = (ev) => performance.timeOrigin + ev.timeStamp + s.offset;

  function ping() {
    if (s.ws && s.ws.readyState === WebSocket.OPEN) {
      s.ws.send(JSON.stringify({ type: "ping", t: localNow() }));
    }
  }

  function onPong(msg) {
    const t1 = localNow();
    const rtt = t1 - msg.t;
    // Keep the estimate of the fastest round trip: its midpoint is the least skewed.
    if (rtt <= s.bestRtt) {
      s.bestRtt = rtt;
      s.offset = msg.server_t - (msg.t + t1) / 2;
      $("offset").textContent = s.offset.toFixed(1);
    }
  }

  // ---- the command ---------------------------------------------------------------------------
  function armCommand(arm) {
    const pos = zero();
    const rot = zero();
    const xr = s.xr[arm];
    if (arm === s.focus) {
      for (const key of s.held) {
        const [kind, axis, sign] = s.motionKeys[key];
        (kind === "pos" ? pos : rot)[axis] += sign;
      }
      for (let i = 0; i < 3; i++) {
        pos[i] += s.touch.pos[i] + s.tilt.pos[i];
        rot[i] += s.touch.rot[i];
      }
    }
    for (let i = 0; i < 3; i++) {
      pos[i] = clip(pos[i] + xr.pos[i]);
      rot[i] = clip(rot[i] + xr.rot[i]);
    }
    const gripper = xr.gripper !== null ? xr.gripper : s.grippers[arm];
    return { pos, rot, gripper };
  }

  function command() {
    if (s.arms.length === 1) return armCommand(0);
    return { arms: s.arms.map((_, arm) => armCommand(arm)) };
  }

  function send(stamp) {
    if (!s.ws || s.ws.readyState !== WebSocket.OPEN) return;
    const msg = { type: "command", seq: s.seq++, ...command(), buttons: [...s.buttons] };
    if (stamp !== undefined) msg.t = stamp;
    s.buttons.clear();
    s.ws.send(JSON.stringify(msg));
  }

  function press(name, ev) {
    s.buttons.add(name);
    send(eventTime(ev));
  }

  function showArm() {
    const closed = s.grippers[s.focus] > 0;
    const b = $("gripper");
    b.textContent = `Gripper: ${closed ? "closed" : "open"}`;
    b.classList.toggle("closed", closed);
    $("arm").hidden = s.arms.length < 2;
    $("arm").textContent = `Arm: ${s.arms[s.focus]}`;
  }

  function toggleGripper(ev) {
    s.grippers[s.focus] = s.grippers[s.focus] < 0 ? 1 : -1;
    showArm();
    send(eventTime(ev));
  }

  function nextArm(ev) {
    if (s.arms.length < 2) return;
    s.focus = (s.focus + 1) % s.arms.length;
    s.held.clear(); // a key held for one arm does not move the next
    showArm();
    send(eventTime(ev));
  }

  // ---- keyboard ------------------------------------------------------------------------------
  window.addEventListener("keydown", (ev) => {
    const lower = ev.key.toLowerCase();
    if (lower in s.motionKeys) {
      ev.preventDefault();
      if (ev.repeat || s.held.has(lower)) return;
      s.held.add(lower);
      send(eventTime(ev));
    } else if (ev.key in s.buttonKeys) {
      ev.preventDefault();
      if (!ev.repeat) press(s.buttonKeys[ev.key], ev);
    } else if (ev.key === s.gripperKey) {
      ev.preventDefault();
      if (!ev.repeat) toggleGripper(ev);
    } else if (ev.key === s.focusKey && s.arms.length > 1) {
      ev.preventDefault();
      if (!ev.repeat) nextArm(ev);
    }
  });
  window.addEventListener("keyup", (ev) => {
    const lower = ev.key.toLowerCase();
    if (s.held.delete(lower)) send(eventTime(ev));
  });
  window.addEventListener("blur", () => {
    s.held.clear(); // keys released while the page had no focus never send keyup
    send(localNow() + s.offset);
  });

  // ---- on-screen buttons and touch pads ------------------------------------------------------
  for (const el of document.querySelectorAll("[data-button]")) {
    el.addEventListener("click", (ev) => press(el.dataset.button, ev));
  }
  $("gripper").addEventListener("click", toggleGripper);
  $("arm").addEventListener("click", nextArm);

  function pad(id, apply) {
    const el = $(id);
    const knob = el.querySelector(".knob");
    const move = (ev) => {
      const r = el.getBoundingClientRect();
      const x = clip((2 * (ev.clientX - r.left)) / r.width - 1);
      const y = clip((2 * (ev.clientY - r.top)) / r.height - 1);
      knob.style.left = `${((x + 1) / 2) * r.width - 20}px`;
      knob.style.top = `${((y + 1) / 2) * r.height - 20}px`;
      apply(x, -y); // screen y grows downwards
      send(eventTime(ev));
    };
    const release = (ev) => {
      knob.style.left = knob.style.top = "50px";
      apply(0, 0);
      send(eventTime(ev));
    };
    el.addEventListener("pointerdown", (ev) => {
      el.setPointerCapture(ev.pointerId);
      move(ev);
    });
    el.addEventListener("pointermove", (ev) => {
      if (el.hasPointerCapture(ev.pointerId)) move(ev);
    });
    el.addEventListener("pointerup", release);
    el.addEventListener("pointercancel", release);
  }
  pad("pad-xy", (x, y) => {
    s.touch.pos[0] = x;
    s.touch.pos[1] = y;
  });
  pad("pad-zr", (x, y) => {
    s.touch.pos[2] = y;
    s.touch.rot[2] = -x; // pushing right turns clockwise seen from above
  });

  // ---- device tilt (phones) -----------------------------------------------------------------
  $("tilt").addEventListener("change", async (ev) => {
    const on = ev.target.checked;
    // iOS asks for permission, and only from a user gesture such as this one.
    const DOE = window.DeviceOrientationEvent;
    if (on && DOE && typeof DOE.requestPermission === "function") {
      if ((await DOE.requestPermission()) !== "granted") {
        ev.target.checked = false;
        return;
      }
    }
    s.tilt.on = on;
    s.tilt.ref = null;
    s.tilt.pos = zero();
    send(eventTime(ev));
  });
  window.addEventListener("deviceorientation", (ev) => {
    if (!s.tilt.on || ev.beta === null || ev.gamma === null) return;
    if (s.tilt.ref === null) s.tilt.ref = [ev.beta, ev.gamma]; // the pose when enabled is rest
    const TILT_FULL = 30; // degrees of tilt for full speed
    s.tilt.pos[0] = clip((ev.gamma - s.tilt.ref[1]) / TILT_FULL);
    s.tilt.pos[1] = clip(-(ev.beta - s.tilt.ref[0]) / TILT_FULL);
    send(eventTime(ev));
  });

  // ---- WebXR: a controller's motion while its squeeze button is held (a clutch) -------------
  // One arm: the right hand's controller (or the only one). Several: the left hand's drives
  // the first arm, the right hand's the second.
  const XR_FULL_SPEED = 0.5; // m/s of hand motion for full speed
  const XR_FULL_TURN = 2.0; // rad/s of hand rotation for full speed

  function quatDeltaRotvec(q1, q0) {
    // axis-angle of q1 * conj(q0), both {x, y, z, w}
    const [x0, y0, z0, w0] = [-q0.x, -q0.y, -q0.z, q0.w];
    let w = q1.w * w0 - q1.x * x0 - q1.y * y0 - q1.z * z0;
    let x = q1.w * x0 + q1.x * w0 + q1.y * z0 - q1.z * y0;
    let y = q1.w * y0 - q1.x * z0 + q1.y * w0 + q1.z * x0;
    let z = q1.w * z0 + q1.x * y0 - q1.y * x0 + q1.z * w0;
    if (w < 0) [w, x, y, z] = [-w, -x, -y, -z];
    const n = Math.hypot(x, y, z);
    if (n < 1e-9) return [0, 0, 0];
    const angle = 2 * Math.atan2(n, w);
    return [(x / n) * angle, (y / n) * angle, (z / n) * angle];
  }

  async function setupXR() {
    if (!navigator.xr) return;
    let mode = null;
    for (const m of ["immersive-ar", "immersive-vr"]) {
      if (await navigator.xr.isSessionSupported(m).catch(() => false)) {
        mode = m;
        break;
      }
    }
    if (mode === null) return;
    const button = $("xr");
    button.hidden = false;
    button.addEventListener("click", async () => {
      const session = await navigator.xr.requestSession(mode);
      const canvas = document.createElement("canvas");
      const gl = canvas.getContext("webgl", { xrCompatible: true });
      session.updateRenderState({ baseLayer: new XRWebGLLayer(session, gl) });
      const space = await session.requestReferenceSpace("local");
      const last = s.arms.map(() => null); // per arm: the pose of the previous frame
      const track = (arm, src, frame, time) => {
        const xr = s.xr[arm];
        const pose = src && frame.getPose(src.gripSpace, space);
        const pads = src && src.gamepad ? src.gamepad.buttons : [];
        const clutch = pads.length > 1 && pads[1].pressed;
        xr.gripper = pads.length > 0 ? 2 * pads[0].value - 1 : null;
        if (!pose || !clutch) {
          last[arm] = null;
          xr.pos = zero();
          xr.rot = zero();
          return;
        }
        const p = pose.transform.position;
        const q = pose.transform.orientation;
        const prev = last[arm];
        if (prev !== null) {
          const dt = Math.max((time - prev.time) / 1000, 1e-3);
          // XR space: x right, y up, -z forward -> operator frame: x right, y away, z up.
          const v = [(p.x - prev.p.x) / dt, -(p.z - prev.p.z) / dt, (p.y - prev.p.y) / dt];
          const r = quatDeltaRotvec(q, prev.q).map((a) => a / dt);
          xr.pos = v.map((a) => clip(a / XR_FULL_SPEED));
          xr.rot = [r[0], -r[2], r[1]].map((a) => clip(a / XR_FULL_TURN));
        }
        last[arm] = { time, p: { x: p.x, y: p.y, z: p.z }, q: { x: q.x, y: q.y, z: q.z, w: q.w } };
      };
      const onFrame = (time, frame) => {
        session.requestAnimationFrame(onFrame);
        const sources = [...session.inputSources].filter((src) => src.gripSpace);
        if (s.arms.length === 1) {
          track(0, sources.find((x) => x.handedness === "right") || sources[0], frame, time);
        } else {
          const hands = ["left", "right"];
          for (let arm = 0; arm < s.arms.length; arm++) {
            const src = sources.find((x) => x.handedness === hands[arm]) || sources[arm];
            track(arm, src, frame, time);
          }
        }
        send(performance.timeOrigin + time + s.offset);
      };
      session.addEventListener("end", () => {
        s.xr = s.arms.map(restXR);
      });
      session.requestAnimationFrame(onFrame);
    });
  }

  // ---- the server: hello, status, frames ------------------------------------------------------
  function onMessage(msg) {
    if (msg.type === "hello") {
      s.rate = msg.rate_hz;
      s.motionKeys = msg.motion_keys;
      s.buttonKeys = msg.button_keys;
      s.gripperKey = msg.gripper_key;
      s.focusKey = msg.focus_key;
      if (msg.arms.join() !== s.arms.join()) {
        // Another task's arms; a reconnect to the same ones keeps the grippers as they are.
        s.arms = msg.arms;
        s.focus = 0;
        s.grippers = s.arms.map(() => -1);
        s.xr = s.arms.map(restXR);
      }
      showArm();
    } else if (msg.type === "pong") {
      onPong(msg);
    } else if (msg.type === "status") {
      $("state").textContent = msg.state;
      $("state").className = `badge ${msg.state}`;
      document.body.classList.toggle("recording", msg.state === "recording");
      document.body.classList.toggle("success", msg.success);
      $("step").textContent = msg.step;
      $("kept").textContent = msg.kept;
      $("discarded").textContent = msg.discarded;
      $("seed").textContent = msg.seed === null ? "-" : msg.seed;
      $("message").textContent = msg.message;
    } else if (msg.type === "error") {
      s.errors += 1;
      $("errors").textContent = s.errors;
      $("message").textContent = `rejected: ${msg.message}`;
    }
  }

  function showFrame(blob) {
    const url = URL.createObjectURL(blob);
    const img = $("view");
    const old = s.frameUrl;
    img.onload = () => old && URL.revokeObjectURL(old);
    img.src = url;
    s.frameUrl = url;
    s.frames += 1;
    $("frames").textContent = s.frames;
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/ws`);
    ws.binaryType = "blob";
    ws.onopen = () => {
      $("conn").textContent = "connected";
      s.bestRtt = Infinity;
      ping();
    };
    ws.onclose = (ev) => {
      if (ev.code === 4000) {
        $("conn").textContent = "another page took over";
        return;
      }
      $("conn").textContent = "disconnected; retrying";
      setTimeout(connect, 1000);
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") onMessage(JSON.parse(ev.data));
      else showFrame(ev.data);
    };
    s.ws = ws;
  }

  connect();
  setupXR();
  const heartbeat = () => {
    send(); // unstamped: the same state again, at the control rate the hello gave
    setTimeout(heartbeat, 1000 / s.rate);
  };
  heartbeat();
  setInterval(ping, 2000);
  window.teleop = s; // for debugging from the console
})();
