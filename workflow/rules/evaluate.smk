# Stage 6a: measure every codec point (learned and classical) on every evaluation dataset.


rule evaluate_codec:
    input:
        unpack(task_measure_inputs),
        model=RESULTS + "/codecs/" + CODEC + "/model.pt",
        cache=RESULTS + "/cache/" + CODEC + "/{dataset}",
    output:
        directory(RESULTS + "/eval/learned/" + CODEC + "/{dataset}"),
    params:
        section=as_json({key: config["evaluate"][key] for key in ("device", "save_reconstructions", "saliency_threshold")}),
        codec_id=lambda wc: f"{wc.arch}/N{wc.N}-M{wc.M}",
        task=task_measure_args,
    log:
        RESULTS + "/logs/evaluate_codec/" + CODEC + "/{dataset}.log",
    benchmark:
        RESULTS + "/benchmarks/evaluate_codec/" + CODEC + "/{dataset}.tsv"
    shell:
        "python -m taskcodec.stages.evaluate_codec --params {params.section:q} --threads {threads} --rule {rule}"
        " --model {input.model:q} --cache {input.cache:q} --codec-id {params.codec_id:q} {params.task}"
        " --out {output:q} > {log:q} 2>&1"


rule evaluate_classical:
    input:
        unpack(dataset_inputs),
        unpack(task_measure_inputs),
    output:
        directory(RESULTS + "/eval/classical/{codec}/{dataset}"),
    params:
        section=lambda wc: as_json(
            {**config["evaluate"]["classical"][wc.codec],
             **{key: config["evaluate"][key] for key in ("device", "save_reconstructions", "saliency_threshold")}}
        ),
        source=dataset_args,
        task=task_measure_args,
    log:
        RESULTS + "/logs/evaluate_classical/{codec}/{dataset}.log",
    benchmark:
        RESULTS + "/benchmarks/evaluate_classical/{codec}/{dataset}.tsv"
    shell:
        "python -m taskcodec.stages.evaluate_classical --params {params.section:q} --threads {threads}"
        " --codec {wildcards.codec} {params.source} {params.task} --out {output:q} > {log:q} 2>&1"
