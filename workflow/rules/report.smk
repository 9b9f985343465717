# Stage 6b: rate-distortion tables, BD-rates, plots and a reconstruction grid per dataset.


rule report:
    input:
        unpack(dataset_inputs),
        learned=lambda wc: per_codec(RESULTS + "/eval/learned/" + CODEC + "/{dataset}", dataset=wc.dataset),
        classical=expand(RESULTS + "/eval/classical/{codec}/{{dataset}}", codec=CLASSICAL_CODECS),
        references=lambda wc: [config["evaluate"]["report"]["references"][wc.dataset]]
        if wc.dataset in config["evaluate"]["report"]["references"]
        else [],
    output:
        report(
            directory(RESULTS + "/report/{dataset}"),
            patterns=["{name}.png"],
            caption="../report/report.rst",
            category="Rate–distortion",
            subcategory="{dataset}",
        ),
    params:
        section=as_json(config["evaluate"]["report"]),
        source=dataset_args,
    log:
        RESULTS + "/logs/report/{dataset}.log",
    shell:
        "python -m taskcodec.stages.report --params {params.section:q} --dataset {wildcards.dataset}"
        " --eval {input.learned:q} {input.classical:q} {params.source} --out {output:q} > {log:q} 2>&1"
