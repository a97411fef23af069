#!/usr/bin/env python3
"""Read a TensorBoard run directory with TensorBoard's own reader and print it as JSON.

Usage: read_tensorboard.py RUN_DIR

Uses tensorboard.backend.event_processing.event_accumulator.EventAccumulator (the pip
`tensorboard` package; TensorFlow is not needed) over every event file in RUN_DIR, exactly
as `tensorboard --logdir` would, and prints:

  {"event_files": [names...],
   "scalars":    {tag: [[step, value], ...]},
   "histograms": {tag: [{"step", "num", "min", "max", "sum", "sum_squares",
                         "bucket_limit", "bucket"}, ...]},
   "images":     {tag: [{"step", "width", "height", "png_width", "png_height",
                         "pixels" (flat RGB list, for images up to 4096 pixels)}, ...]},
   "plugins":    {plugin: [tag, ...]},
   "hparams":    {"session_start_info": {"hparams": {name: value}, "model_uri", "group_name",
                                         "start_time_secs"} or null,
                  "experiment": {"hparams": [{"name", "type"}], "metric_tags": [tag, ...]}
                                or null,
                  "session_end_info": {"status": "STATUS_SUCCESS" | ..., "end_time_secs"} or null,
                  "session_groups": [{"hparams": {name: value}, "metrics": {tag: value},
                                      "sessions": [{"name", "status", "metrics"}]}]}}

"plugins" is what the TensorBoard server itself sees: the same files loaded through
plugin_event_accumulator, which migrates every summary to the plugin (scalars, histograms,
images) that will draw it.

"hparams" is TensorBoard's HParams plugin data: each `_hparams_/*` summary's content parsed
with plugin_data_pb2.HParamsPluginData (the first one of each tag, as TensorBoard keeps), and
"session_groups" the rows the HParams dashboard shows, from the plugin's own backend
(list_session_groups over RUN_DIR as the log directory, so the session is named ".").

width/height are the Summary.Image fields; png_width/png_height and pixels come from decoding
the PNG itself, so a mismatch between the two is visible. Set up with
scripts/setup-test-python.sh.
"""
import json
import os
import struct
import sys
import zlib

from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.backend.event_processing import plugin_event_accumulator as pea
from tensorboard.backend.event_processing import data_provider
from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
from tensorboard import context
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import backend_context
from tensorboard.plugins.hparams import list_session_groups
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.hparams import plugin_data_pb2
from google.protobuf import json_format


def decode_png_rgb8(data):
    """Decode a non-interlaced 8-bit RGB PNG into (width, height, flat pixel list)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, width, height = 8, b"", None, None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if zlib.crc32(kind + body) != struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0]:
            raise ValueError("bad CRC in PNG chunk %r" % kind)
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if (depth, colour, interlace) != (8, 2, 0):
                return width, height, None
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    raw = zlib.decompress(idat)
    stride, bpp = width * 3, 3
    out, prev = bytearray(), bytearray(stride)
    for y in range(height):
        filt = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if filt == 1:
                line[i] = (line[i] + a) & 0xFF
            elif filt == 2:
                line[i] = (line[i] + b) & 0xFF
            elif filt == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif filt == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
            elif filt != 0:
                raise ValueError("bad PNG filter %d" % filt)
        out += line
        prev = line
    return width, height, list(out)


def value_of(value):
    """A google.protobuf.Value as a plain Python value."""
    return json_format.MessageToDict(value)


def hparams_plugin_data(plugin_acc):
    """The run's HParams plugin data as TensorBoard's plugin reads it (first summary per tag)."""
    result = {"session_start_info": None, "experiment": None, "session_end_info": None}
    if hparams_metadata.PLUGIN_NAME not in plugin_acc.ActivePlugins():
        return result
    contents = plugin_acc.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    for tag, content in contents.items():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.version != hparams_metadata.PLUGIN_DATA_VERSION:
            raise ValueError("%s: plugin data version %d" % (tag, data.version))
        kind = data.WhichOneof("data")
        if tag == hparams_metadata.SESSION_START_INFO_TAG and kind == "session_start_info":
            info = data.session_start_info
            result["session_start_info"] = {
                "hparams": {k: value_of(v) for k, v in info.hparams.items()},
                "model_uri": info.model_uri,
                "group_name": info.group_name,
                "start_time_secs": info.start_time_secs,
            }
        elif tag == hparams_metadata.EXPERIMENT_TAG and kind == "experiment":
            exp = data.experiment
            result["experiment"] = {
                "hparams": [
                    {"name": h.name, "type": api_pb2.DataType.Name(h.type)}
                    for h in exp.hparam_infos
                ],
                "metric_tags": [m.name.tag for m in exp.metric_infos],
                "metric_groups": [m.name.group for m in exp.metric_infos],
            }
        elif tag == hparams_metadata.SESSION_END_INFO_TAG and kind == "session_end_info":
            info = data.session_end_info
            result["session_end_info"] = {
                "status": api_pb2.Status.Name(info.status),
                "end_time_secs": info.end_time_secs,
            }
        else:
            raise ValueError("unexpected hparams summary %r holding %r" % (tag, kind))
    return result


def hparams_session_groups(run_dir):
    """The rows of TensorBoard's HParams dashboard for RUN_DIR as the log directory."""
    mux = pem.EventMultiplexer()
    mux.AddRunsFromDirectory(run_dir)
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, run_dir)
    tb_context = base_plugin.TBContext(data_provider=provider, logdir=run_dir, multiplexer=mux)
    request = api_pb2.ListSessionGroupsRequest(
        start_index=0, slice_size=1000, allowed_statuses=list(api_pb2.Status.values())
    )
    response = list_session_groups.Handler(
        context.RequestContext(), backend_context.Context(tb_context), "", request
    ).run()

    def metrics(values):
        return {m.name.tag: m.value for m in values}

    return [
        {
            "hparams": {k: value_of(v) for k, v in group.hparams.items()},
            "metrics": metrics(group.metric_values),
            "sessions": [
                {"name": s.name, "status": api_pb2.Status.Name(s.status),
                 "metrics": metrics(s.metric_values)}
                for s in group.sessions
            ],
        }
        for group in response.session_groups
    ]


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: read_tensorboard.py RUN_DIR")
    run_dir = sys.argv[1]
    keep_all = {ea.SCALARS: 0, ea.HISTOGRAMS: 0, ea.IMAGES: 0, ea.COMPRESSED_HISTOGRAMS: 0,
                ea.TENSORS: 0, ea.AUDIO: 0}
    acc = ea.EventAccumulator(run_dir, size_guidance=keep_all)
    acc.Reload()
    tags = acc.Tags()
    result = {
        "event_files": sorted(f for f in os.listdir(run_dir) if "tfevents" in f),
        "scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
        "histograms": {},
        "images": {},
    }
    for tag in tags["histograms"]:
        result["histograms"][tag] = [
            {
                "step": e.step,
                "num": e.histogram_value.num,
                "min": e.histogram_value.min,
                "max": e.histogram_value.max,
                "sum": e.histogram_value.sum,
                "sum_squares": e.histogram_value.sum_squares,
                "bucket_limit": list(e.histogram_value.bucket_limit),
                "bucket": list(e.histogram_value.bucket),
            }
            for e in acc.Histograms(tag)
        ]
    for tag in tags["images"]:
        images = []
        for e in acc.Images(tag):
            png_w, png_h, pixels = decode_png_rgb8(e.encoded_image_string)
            item = {"step": e.step, "width": e.width, "height": e.height,
                    "png_width": png_w, "png_height": png_h}
            if pixels is not None and png_w * png_h <= 4096:
                item["pixels"] = pixels
            images.append(item)
        result["images"][tag] = images
    plugin_acc = pea.EventAccumulator(run_dir, size_guidance={pea.TENSORS: 0})
    plugin_acc.Reload()
    result["plugins"] = {
        p: sorted(plugin_acc.PluginTagToContent(p)) for p in plugin_acc.ActivePlugins()
    }
    result["hparams"] = hparams_plugin_data(plugin_acc)
    result["hparams"]["session_groups"] = hparams_session_groups(run_dir)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
