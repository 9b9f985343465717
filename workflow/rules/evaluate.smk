# Stage 6a: measure every codec point (learned and classical) on every evaluation dataset.
#
# Job groups (inactive in a local run): evaluate_codec joins its cache in group "coding" (cache.smk); the classical
# evaluations, one small job per codec and dataset, form group "classical", which a cluster profile batches with
# `--group-components classical=<n>` (e.g. all codecs of a dataset in one submission).


rule evaluate_codec:
    input:
        unpack(task_measure_inputs),
        model=results("codecs", CODEC, "model.pt"),
        cache=results("cache", CODEC, "{dataset}"),
    output:
        directory(results("eval", "learned", CODEC, "{dataset}")),
    params:
        section=evaluate_section(),
        codec_id=lambda wc: f"{wc.arch}/{wc.hyper}",
        point="",  # the codec's place on its curve: its lambda
        task=task_measure_args,
        rule="evaluate_codec",
    threads: job_threads("evaluate_codec")
    resources:
        **job_resources("evaluate_codec"),
    group:
        "coding"
    log:
        results("logs", "evaluate_codec", CODEC, "{dataset}.log"),
    benchmark:
        results("benchmarks", "evaluate_codec", CODEC, "{dataset}.tsv")
    conda:
        CONDA_ENV
    shell:
        "python -m taskcodec.stages.evaluate_codec --params {params.section:q} --threads {threads}"
        " --device {resources.device:q} --rule {params.rule} --model {input.model:q} --cache {input.cache:q}"
        " --codec-id {params.codec_id:q} {params.point} {params.task} --out {output:q} > {log:q} 2>&1"


rule evaluate_classical:
    input:
        unpack(dataset_inputs),
        unpack(task_measure_inputs),
    output:
        directory(results("eval", "classical", "{codec}", "{dataset}")),
    params:
        section=lambda wc: evaluate_section(**config["evaluate"]["classical"][wc.codec]),
        source=dataset_args,
        task=task_measure_args,
    threads: job_threads("evaluate_classical")
    resources:
        **job_resources("evaluate_classical"),
    group:
        "classical"
    log:
        results("logs", "evaluate_classical", "{codec}", "{dataset}.log"),
    benchmark:
        results("benchmarks", "evaluate_classical", "{codec}", "{dataset}.tsv")
    conda:
        CONDA_ENV
    shell:
        "python -m taskcodec.stages.evaluate_classical --params {params.section:q} --threads {threads}"
        " --device {resources.device:q} --codec {wildcards.codec} {params.source} {params.task}"
        " --out {output:q} > {log:q} 2>&1"
