#!/usr/bin/env python3
"""The measuring half of bench/h264_quality.sh (which writes the raw sources and builds
the tools): for one raw NV12 source, encode it as JPEG and as H.264 at a ladder of
bitrates, measure SSIM and PSNR against the source with ffmpeg, and bisect for the
lowest H.264 bitrate whose SSIM is at least JPEG's.

    h264_quality.py QUALITY_TOOL DIR SOURCE_NAME WxH FPS FRAMES JPEG_Q LADDER REFINE
                    KEYFRAME_S CSV [ENCODER ...]
    h264_quality.py --table JPEG_Q SUMMARY.json ...     (the markdown table, to stdout)

DIR holds source.nv12; results go next to it and into DIR/summary.json. ENCODER is
`openh264` (the project's H264Encoder, through the quality tool; the default) and/or
`x264` (ffmpeg's libx264 as a reference for what a stronger H.264 encoder does under the
same live constraints: Constrained Baseline, no B-frames, no lookahead (`-tune
zerolatency`), `-preset veryfast`, the same keyframe interval, bitrate capped with a
one-second VBV buffer).
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys


def table(q, paths):
    rows = [json.load(open(p)) for p in paths]
    x264 = any("x264" in s for s in rows)
    head = (f"| source | size | JPEG q{q} Mbit/s | JPEG SSIM (PSNR dB) | "
            "H.264 (OpenH264) target → actual Mbit/s | H.264 SSIM (PSNR dB) | "
            "JPEG ÷ H.264 bytes | mean frame B: JPEG / H.264 (keyframe, delta) |")
    rule = "|---|---|---:|---|---|---|---:|---|"
    if x264:
        head += " libx264 reference: Mbit/s, SSIM, JPEG ÷ x264 |"
        rule += "---|"
    print(head)
    print(rule)
    for s in rows:
        j, m = s["jpeg"], s["h264"]
        h = m["row"]
        mark = "" if m["matched"] else " (not reached)"
        line = (f"| {s['source']} | {s['size']} | {j['mbit_s']:.2f} | "
                f"{j['ssim_all']:.4f} ({j['psnr_avg']:.1f}) | "
                f"{m['kbps']} kbit/s → {h['mbit_s']:.2f}{mark} | "
                f"{h['ssim_all']:.4f} ({h['psnr_avg']:.1f}) | "
                f"**{j['mbit_s'] / h['mbit_s']:.1f}×** | "
                f"{j['mean_frame_bytes']:.0f} / {h['mean_frame_bytes']:.0f} "
                f"({h['mean_keyframe_bytes']:.0f}, {h['mean_delta_bytes']:.0f}) |")
        if x264:
            if "x264" in s:
                x = s["x264"]["row"]
                mark = "" if s["x264"]["matched"] else " (not reached)"
                line += (f" {x['mbit_s']:.2f}{mark}, {x['ssim_all']:.4f}, "
                         f"{j['mbit_s'] / x['mbit_s']:.1f}× |")
            else:
                line += " |"
        print(line)


if sys.argv[1] == "--table":
    table(sys.argv[2], sys.argv[3:])
    sys.exit(0)

(quality, d, src, size, fps, frames, q, ladder, refine, keyframe, csv_path,
 *encoders) = sys.argv[1:]
encoders = encoders or ["openh264"]
frames, refine = int(frames), int(refine)
ladder = sorted(int(k) for k in ladder.split(","))
source = os.path.join(d, "source.nv12")
gop = max(1, round(float(keyframe) * float(fps)))


def check(row):
    if row["frames"] != frames or row["skipped"]:
        sys.exit(f"{row['file']}: {row['frames']} frames, {row['skipped']} skipped; "
                 f"expected {frames}")
    return row


def run_quality(jpeg, kbps):
    """The project's encoders, through the quality tool; its JSON lines."""
    args = [quality, "--size", size, "--format", "nv12", "--input", source, "--fps", fps,
            "--keyframe-interval", keyframe, "--out", d,
            "--jpeg", ",".join(map(str, jpeg)), "--h264", ",".join(map(str, kbps))]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return [check(json.loads(line)) for line in out.splitlines() if line.startswith("{")]


def run_x264(kbps):
    """libx264 through ffmpeg, with the same figures the quality tool reports."""
    path = os.path.join(d, f"x264-{kbps}k.h264")
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "nv12",
         "-s", size, "-framerate", fps, "-i", source, "-frames:v", str(frames),
         "-c:v", "libx264", "-profile:v", "baseline", "-preset", "veryfast",
         "-tune", "zerolatency", "-g", str(gop), "-keyint_min", str(gop),
         "-sc_threshold", "0", "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k",
         "-bufsize", f"{kbps}k", "-pix_fmt", "yuv420p", "-colorspace", "smpte170m",
         "-color_primaries", "smpte170m", "-color_trc", "smpte170m", "-color_range", "tv",
         "-f", "h264", "-y", path], check=True)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-f", "h264", "-show_entries", "packet=size,flags",
         "-of", "csv=p=0", path], check=True, capture_output=True, text=True).stdout
    sizes = [(int(s), "K" in f) for s, f in (l.split(",")[:2] for l in probe.split())]
    keys = [s for s, k in sizes if k]
    deltas = [s for s, k in sizes if not k]
    total = os.path.getsize(path)
    mean = lambda xs: sum(xs) / len(xs) if xs else 0.0
    return check({
        "codec": "x264", "label": f"{kbps}k", "file": path, "frames": len(sizes),
        "bytes": total, "mbit_s": total * 8 * float(fps) / frames / 1e6,
        "mean_frame_bytes": total / max(1, len(sizes)), "keyframes": len(keys),
        "mean_keyframe_bytes": mean(keys), "mean_delta_bytes": mean(deltas),
        "max_frame_bytes": max(s for s, _ in sizes), "skipped": 0,
        "cpu_ms_per_frame": float("nan"),
    })


def measure(row):
    """SSIM and PSNR of an encoded file against the source, frame by frame."""
    demux = "mjpeg" if row["codec"] == "jpeg" else "h264"
    # Both inputs get the same timestamps (frame numbers), so frames pair one to one;
    # format=yuv420p turns JPEG's full range into limited range like the source's.
    sync = "settb=1,setpts=N"
    graph = (f"[1:v]format=yuv420p,{sync},split[d1][d2];"
             f"[0:v]format=yuv420p,{sync},split[r1][r2];"
             "[d1][r1]ssim;[d2][r2]psnr")
    p = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-f", "rawvideo", "-pix_fmt", "nv12",
         "-s", size, "-framerate", fps, "-i", source, "-f", demux, "-framerate", fps,
         "-i", row["file"], "-lavfi", graph, "-f", "null", "-"],
        check=True, capture_output=True, text=True).stderr
    ssim = re.search(r"SSIM Y:([\d.]+).* All:([\d.]+)", p)
    psnr = re.search(r"PSNR y:([\d.inf]+).* average:([\d.inf]+)", p)
    row.update(ssim_y=float(ssim[1]), ssim_all=float(ssim[2]),
               psnr_y=float(psnr[1]), psnr_avg=float(psnr[2]))
    with open(csv_path, "a") as f:
        f.write(",".join(str(x) for x in [
            src, size, row["codec"], row["label"], row["frames"], f"{row['mbit_s']:.4f}",
            f"{row['mean_frame_bytes']:.1f}", f"{row['mean_keyframe_bytes']:.1f}",
            f"{row['mean_delta_bytes']:.1f}", row["keyframes"], row["ssim_y"],
            row["ssim_all"], row["psnr_y"], row["psnr_avg"],
            f"{row['cpu_ms_per_frame']:.3f}"]) + "\n")
    print(f"  {row['codec']:8} {row['label']:>7}: {row['mbit_s']:8.3f} Mbit/s  "
          f"SSIM {row['ssim_all']:.5f} (Y {row['ssim_y']:.5f})  PSNR {row['psnr_avg']:.2f} dB",
          file=sys.stderr)
    return row


def search(target, first_rows, encode_one):
    """The lowest bitrate tried whose SSIM reaches `target`, from the ladder rows given,
    doubling or halving past the ladder's ends and bisecting (geometric) in between."""
    tried = {}
    for r in first_rows:
        tried[int(r["label"][:-1])] = measure(r)
        if r["ssim_all"] >= target:
            break  # higher rungs cannot be the match
    passes = lambda k: tried[k]["ssim_all"] >= target
    # Beyond the ladder: double until H.264 reaches the target (or 240 Mbit/s, the
    # encoder's cap), or halve (down to 16 kbit/s) while even the lowest rung does.
    while not any(map(passes, tried)) and max(tried) < 240000:
        k = min(max(tried) * 2, 240000)
        tried[k] = measure(encode_one(k))
    while all(map(passes, tried)) and min(tried) > 16:
        k = max(min(tried) // 2, 16)
        tried[k] = measure(encode_one(k))

    def bracket():
        ok = [k for k in tried if passes(k)]
        hi = min(ok) if ok else None
        lo = max((k for k in tried if hi is None or k < hi), default=None)
        return lo, hi

    for _ in range(refine):
        lo, hi = bracket()
        if lo is None or hi is None or hi - lo <= max(10, hi // 50):
            break
        k = round(math.sqrt(lo * hi))
        tried[k] = measure(encode_one(k))
    lo, hi = bracket()
    best = hi if hi is not None else max(tried)
    return {"matched": hi is not None, "kbps": best, "row": tried[best],
            "below": tried[lo] if lo is not None else None}


match_dir = os.path.join(d, "match")
os.makedirs(match_dir, exist_ok=True)
summary = {"source": src, "size": size}
if "openh264" in encoders:
    rows = run_quality([int(q)], ladder)
else:
    rows = run_quality([int(q)], [])
jpeg = measure(rows[0])
summary["jpeg"] = jpeg
shutil.copy(jpeg["file"], os.path.join(match_dir, f"jpeg-q{q}.mjpeg"))
for enc in encoders:
    if enc == "openh264":
        result = search(jpeg["ssim_all"], rows[1:], lambda k: run_quality([], [k])[0])
        name = "h264"
    elif enc == "x264":
        result = search(jpeg["ssim_all"], (run_x264(k) for k in ladder), run_x264)
        name = "x264"
    else:
        sys.exit(f"unknown encoder {enc}")
    summary[name] = result
    if result["matched"]:
        shutil.copy(result["row"]["file"], os.path.join(match_dir, f"{name}-match.h264"))
with open(os.path.join(d, "summary.json"), "w") as f:
    json.dump(summary, f)
