# Stage 3c: one model, many rates (seed 001): one codec per entry of variable_rate.sweep.models, trained for all
# the lambdas of variable_rate.sweep.lmbdas at once (one operating point each: the feature pyramid's levels, or
# CompressAI's variable-rate gains); the pyramid on the self-supervised features of train_simclr, which runs only
# when a model reads it (common.smk: ssl_input). Each operating point is cached and evaluated like a codec of its
# own; together they are the model's curve.


rule train_variable_rate:
    input:
        unpack(ssl_input),
        prepared=results("prepared"),
    output:
        model=results("variable_rate", VARIABLE, "model.pt"),
        metrics=results("variable_rate", VARIABLE, "metrics.json"),
        train_log=results("variable_rate", VARIABLE, "train_log.csv"),
    params:
        section=as_json(config["variable_rate"]["train"]),
        hyper=hyper_json("variable_rate"),
        lmbdas=",".join(number_id(lmbda) for lmbda in config["variable_rate"]["sweep"]["lmbdas"]),
        perceptual=config["variable_rate"]["sweep"]["perceptual_weight"],
        ssl=lambda wc, input: f"--ssl-model {shlex.quote(input.ssl_model)}" if input.get("ssl_model") else "",
    threads: job_threads("train_codec")
    resources:
        **job_resources("train_codec"),
    log:
        results("logs", "train_variable_rate", f"{VARIABLE}.log"),
    benchmark:
        results("benchmarks", "train_variable_rate", f"{VARIABLE}.tsv")
    conda:
        CONDA_ENV
    shell:
        "{resources.launcher} taskcodec.stages.train_codec --params {params.section:q} --threads {threads}"
        " --device {resources.device:q} --rule train_variable_rate --arch {wildcards.arch} --hyper {params.hyper:q}"
        " --lmbdas {params.lmbdas} --perceptual-weight {params.perceptual} {params.ssl}"
        " --mem-mb {resources.mem_mb}"
        " --manifest {input.prepared:q}/manifest.csv --out {output.model:q} > {log:q} 2>&1"


use rule cache_latents as cache_variable_rate with:
    input:
        unpack(dataset_inputs),
        model=results("variable_rate", VARIABLE, "model.pt"),
    output:
        directory(results("cache", "variable_rate", VARIABLE_POINT, "{dataset}")),
    params:
        section=as_json({key: value for key, value in config["cache"].items() if key != "splits"}),
        source=lambda wc: f"{dataset_args(wc)} --point-index {wc.point}",
        latents=lambda wc: "" if wc.dataset in SPLITS else "--no-latents",
        rule="cache_variable_rate",
    log:
        results("logs", "cache_variable_rate", VARIABLE_POINT, "{dataset}.log"),
    benchmark:
        results("benchmarks", "cache_variable_rate", VARIABLE_POINT, "{dataset}.tsv")


use rule evaluate_codec as evaluate_variable_rate with:
    input:
        unpack(task_measure_inputs),
        model=results("variable_rate", VARIABLE, "model.pt"),
        cache=results("cache", "variable_rate", VARIABLE_POINT, "{dataset}"),
    output:
        directory(results("eval", "variable_rate", VARIABLE_POINT, "{dataset}")),
    params:
        section=evaluate_section(),
        # one curve per model, through its operating points, each placed by its own lambda
        codec_id=lambda wc: f"{wc.arch}/{wc.hyper}",
        point=lambda wc: f"--point-index {wc.point}",
        task=task_measure_args,
        rule="evaluate_variable_rate",
    log:
        results("logs", "evaluate_variable_rate", VARIABLE_POINT, "{dataset}.log"),
    benchmark:
        results("benchmarks", "evaluate_variable_rate", VARIABLE_POINT, "{dataset}.tsv")
