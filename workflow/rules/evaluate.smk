# Stage 6a: measure every codec point (learned and classical) on every evaluation dataset.


rule evaluate_codec:
    input:
        model=RESULTS + "/codecs/" + CODEC + "/model.pt",
        cache=RESULTS + "/cache/" + CODEC + "/{dataset}",
    output:
        directory(RESULTS + "/eval/learned/" + CODEC + "/{dataset}"),
    params:
        section=as_json({key: config["evaluate"][key] for key in ("device", "save_reconstructions")}),
    log:
        RESULTS + "/logs/evaluate_codec/" + CODEC + "/{dataset}.log",
    benchmark:
        RESULTS + "/benchmarks/evaluate_codec/" + CODEC + "/{dataset}.tsv"
    shell:
        "python -m taskcodec.stages.evaluate_codec --params {params.section:q} --threads {threads}"
        " --model {input.model:q} --cache {input.cache:q} --codec-id {wildcards.arch}/N{wildcards.N}-M{wildcards.M}"
        " --out {output:q} > {log:q} 2>&1"


rule evaluate_classical:
    input:
        unpack(dataset_inputs),
    output:
        directory(RESULTS + "/eval/classical/{codec}/{dataset}"),
    params:
        section=lambda wc: as_json(
            {**config["evaluate"]["classical"][wc.codec], "save_reconstructions": config["evaluate"]["save_reconstructions"]}
        ),
        source=dataset_args,
    log:
        RESULTS + "/logs/evaluate_classical/{codec}/{dataset}.log",
    benchmark:
        RESULTS + "/benchmarks/evaluate_classical/{codec}/{dataset}.tsv"
    shell:
        "python -m taskcodec.stages.evaluate_classical --params {params.section:q} --threads {threads}"
        " --codec {wildcards.codec} {params.source} --out {output:q} > {log:q} 2>&1"
