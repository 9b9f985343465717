# Stage 6b: rate-distortion tables, BD-rates, plots and a reconstruction grid per dataset.


rule report:
    input:
        unpack(dataset_inputs),
        learned=lambda wc: per_codec(RESULTS + "/eval/learned/" + CODEC + "/{dataset}", dataset=wc.dataset),
        classical=expand(RESULTS + "/eval/classical/{codec}/{{dataset}}", codec=CLASSICAL_CODECS),
    output:
        directory(RESULTS + "/report/{dataset}"),
    params:
        section=as_json(config["evaluate"]["report"]),
        source=dataset_args,
    log:
        RESULTS + "/logs/report/{dataset}.log",
    shell:
        "python -m taskcodec.stages.report --params {params.section:q} --dataset {wildcards.dataset}"
        " --eval {input.learned} {input.classical} {params.source} --out {output} > {log} 2>&1"
