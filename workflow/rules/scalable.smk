# Stage 3b: scalable coding for humans and machines (seed 002): one codec per (hyperparameters, lambda_img,
# lambda_task) of scalable.sweep, trained on R_base + R_enh + lambda_task * D(features) + lambda_img * D(image)
# around the frozen model of scalable.task, whose features at its model.split_stage feed the base layer. Its bitstreams are
# cached and evaluated like any codec's: the image from both layers, the task from the base layer alone.


rule train_scalable:
    input:
        prepared=results("prepared"),
        task_model=task_model(config["scalable"]["task"]),
    output:
        model=results("scalable", SCALABLE, "model.pt"),
        metrics=results("scalable", SCALABLE, "metrics.json"),
        train_log=results("scalable", SCALABLE, "train_log.csv"),
    params:
        section=as_json(config["scalable"]["train"]),
        hyper=hyper_json("scalable"),
    threads: job_threads("train_codec")
    resources:
        **job_resources("train_codec"),
    log:
        results("logs", "train_scalable", f"{SCALABLE}.log"),
    benchmark:
        results("benchmarks", "train_scalable", f"{SCALABLE}.tsv")
    conda:
        CONDA_ENV
    shell:
        "{resources.launcher} taskcodec.stages.train_codec --params {params.section:q} --threads {threads}"
        " --device {resources.device:q} --rule train_scalable --arch {wildcards.arch} --hyper {params.hyper:q}"
        " --lmbda {wildcards.lmbda} --task-model {input.task_model:q} --task-lmbda {wildcards.task_lmbda}"
        " --mem-mb {resources.mem_mb}"
        " --manifest {input.prepared:q}/manifest.csv --out {output.model:q} > {log:q} 2>&1"


use rule cache_latents as cache_scalable with:
    input:
        unpack(dataset_inputs),
        model=results("scalable", SCALABLE, "model.pt"),
    output:
        directory(results("cache", "scalable", SCALABLE, "{dataset}")),
    params:
        section=as_json({key: value for key, value in config["cache"].items() if key != "splits"}),
        source=dataset_args,
        latents=lambda wc: "" if wc.dataset in SPLITS else "--no-latents",
        rule="cache_scalable",
    log:
        results("logs", "cache_scalable", SCALABLE, "{dataset}.log"),
    benchmark:
        results("benchmarks", "cache_scalable", SCALABLE, "{dataset}.tsv")


use rule evaluate_codec as evaluate_scalable with:
    input:
        unpack(task_measure_inputs),
        model=results("scalable", SCALABLE, "model.pt"),
        cache=results("cache", "scalable", SCALABLE, "{dataset}"),
    output:
        directory(results("eval", "scalable", SCALABLE, "{dataset}")),
    params:
        section=evaluate_section(),
        # one curve per (model, lambda_img), along lambda_task: the weight that sets the base layer's rate
        codec_id=lambda wc: f"{wc.arch}/{wc.hyper} lmbda{wc.lmbda}",
        point=lambda wc: f"--point {wc.task_lmbda}",
        task=task_measure_args,
        rule="evaluate_scalable",
    log:
        results("logs", "evaluate_scalable", SCALABLE, "{dataset}.log"),
    benchmark:
        results("benchmarks", "evaluate_scalable", SCALABLE, "{dataset}.tsv")
