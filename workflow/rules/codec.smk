# Stage 3: train one codec per (architecture, N, M, lambda) of the sweep on rate + lambda * distortion.


rule train_codec:
    input:
        unpack(lambda wc: saliency_input(config["codec"]["train"]["saliency_floor"])),
        prepared=RESULTS + "/prepared",
    output:
        model=RESULTS + "/codecs/" + CODEC + "/model.pt",
        metrics=RESULTS + "/codecs/" + CODEC + "/metrics.json",
        train_log=RESULTS + "/codecs/" + CODEC + "/train_log.csv",
    params:
        section=as_json(config["codec"]["train"]),
        saliency=saliency_args(config["codec"]["train"]["saliency_floor"]),
    threads: config["codec"]["train"]["threads"]
    log:
        RESULTS + "/logs/train_codec/" + CODEC + ".log",
    benchmark:
        RESULTS + "/benchmarks/train_codec/" + CODEC + ".tsv"
    shell:
        "python -m taskcodec.stages.train_codec --params {params.section:q} --threads {threads}"
        " --arch {wildcards.arch} --N {wildcards.N} --M {wildcards.M} --lmbda {wildcards.lmbda}"
        " --manifest {input.prepared:q}/manifest.csv {params.saliency} --out {output.model:q} > {log:q} 2>&1"
