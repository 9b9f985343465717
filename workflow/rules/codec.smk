# Stage 3: train one codec per (architecture with its hyperparameters, lambda) of the sweep on
# rate + lambda * distortion. With codec.train.init: neighbour (smaller_neighbour), each lambda starts from the
# trained codec of the next larger (smaller) lambda of the same model (common.smk: neighbour_init), so the sweep
# trains as a chain.
# resources.train_codec.tasks > 1 runs the stage under torchrun, that many processes (job_resources' launcher).


rule train_codec:
    input:
        unpack(lambda wc: saliency_input(config["codec"]["train"]["saliency_floor"])),
        unpack(neighbour_init),
        prepared=results("prepared"),
    output:
        model=results("codecs", CODEC, "model.pt"),
        metrics=results("codecs", CODEC, "metrics.json"),
        train_log=results("codecs", CODEC, "train_log.csv"),
    params:
        section=as_json(config["codec"]["train"]),
        hyper=hyper_json("codec"),
        saliency=saliency_args(config["codec"]["train"]["saliency_floor"]),
        init=lambda wc, input: f"--init-from {shlex.quote(input.init)}" if input.get("init") else "",
    threads: job_threads("train_codec")
    resources:
        **job_resources("train_codec"),
    log:
        results("logs", "train_codec", f"{CODEC}.log"),
    benchmark:
        results("benchmarks", "train_codec", f"{CODEC}.tsv")
    conda:
        CONDA_ENV
    shell:
        "{resources.launcher} taskcodec.stages.train_codec --params {params.section:q} --threads {threads}"
        " --device {resources.device:q} --arch {wildcards.arch} --hyper {params.hyper:q} --lmbda {wildcards.lmbda}"
        " --mem-mb {resources.mem_mb}"
        " --manifest {input.prepared:q}/manifest.csv {params.saliency} {params.init} --out {output.model:q} > {log:q} 2>&1"
