"""One whole txt2img run of a converted pipeline in this process, timed part by part; prints one JSON line.

    python bench/pipeline_runner.py MODEL_DIR STEPS GUIDANCE SAMPLER

Run by bench/sd15_pipeline.py and bench/sdxl_pipeline.py, each run in a fresh process (optionally under memlimit):
time of the text encoder(s), of every UNet step and of the VAE decode, the total, the peak RSS of each part
(VmHWM reset before each part through /proc/self/clear_refs) and of the run, the RSS at exit (anonymous + file),
MB written (/proc/self/io) and whether the image is finite.
"""
import json
import sys
import time


def io():
    return {k: int(v) for k, v in (line.split(": ") for line in open("/proc/self/io"))}


def hwm_mb():
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1]) / 1024


def main():
    model, steps, guidance, sampler = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    start, io0 = time.perf_counter(), io()
    from onnxstream.pipelines.stable_diffusion import StableDiffusion
    sd = StableDiffusion(model)
    marks, peaks = {}, {}

    def timed(name, fn):
        def run(*args):
            open("/proc/self/clear_refs", "w").write("5")  # reset VmHWM: the peak of this part alone
            t = time.perf_counter()
            out = fn(*args)
            marks.setdefault(name, []).append(time.perf_counter() - t)
            peaks[name] = max(peaks.get(name, 0), hwm_mb())
            return out
        return run

    sd.encode_prompt, sd.unet, sd.vae_decode = (timed("text", sd.encode_prompt), timed("unet", sd.unet),
                                                timed("vae", sd.vae_decode))
    image = sd("a photo of a cat", negative_prompt="blurry", steps=steps, guidance=guidance, sampler=sampler,
               seed=1, output_type="np")
    total, io1 = time.perf_counter() - start, io()
    peaks["all"] = max(peaks.values())  # VmHWM was reset per part; the max over parts is the run's peak
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    mb = lambda k: int(status[k].split()[0]) / 1024  # noqa: E731
    print(json.dumps({"text": sum(marks["text"]), "steps": marks["unet"], "vae": sum(marks["vae"]), "total": total,
                      "peak_mb": peaks["all"], "peaks": peaks, "anon_mb": mb("RssAnon"), "file_mb": mb("RssFile"),
                      "written_mb": (io1["write_bytes"] - io0["write_bytes"]) / 2**20,
                      "finite": bool((image == image).all())}))


if __name__ == "__main__":
    main()
