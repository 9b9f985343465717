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


# Stage 6c: rate-accuracy of every way of sending the test images to the task model.


rule report_task:
    input:
        prepared=RESULTS + "/prepared",
        task_model=TASK_MODEL,
        classical=expand(RESULTS + "/eval/classical/{codec}/test", codec=CLASSICAL_CODECS),
        pretrained=per_codec(RESULTS + "/eval/learned/" + CODEC + "/test"),
        finetuned=[RESULTS + "/eval/finetuned/" + TUNED.format(**point) + "/test" for point in finetune_points()],
        latent=per_codec(RESULTS + "/latent/" + CODEC + "/metrics.json"),
        joint=per_codec(RESULTS + "/joint/" + CODEC) if config["latent_classifier"]["joint"]["enabled"] else [],
    output:
        report(
            directory(MACHINE_REPORT),
            patterns=["{name}.png"],
            caption="../report/report_task.rst",
            category="Rate–accuracy",
        ),
    params:
        section=as_json(config["evaluate"]["report"]),
    log:
        RESULTS + "/logs/report_task.log",
    shell:
        "python -m taskcodec.stages.report_task --params {params.section:q} --task-model {input.task_model:q}"
        " --manifest {input.prepared:q}/manifest.csv --classical {input.classical:q}"
        " --pretrained {input.pretrained:q} --finetuned {input.finetuned:q} --latent {input.latent:q}"
        " --joint {input.joint:q} --out {output:q} > {log:q} 2>&1"


# Stage 6d: headline numbers for DVC (`dvc metrics show`, `dvc plots show`) and the final summary.


rule summarize:
    input:
        reports=report_outputs(),
        machine=[MACHINE_REPORT] if MACHINE else [],
    output:
        metrics=RESULTS + "/summary/metrics.json",
        rate_distortion=RESULTS + "/summary/rate_distortion.csv",
        rate_accuracy=RESULTS + "/summary/rate_accuracy.csv",
    params:
        machine=lambda wc, input: f"--machine {shlex.quote(input.machine[0])}" if MACHINE else "",
    log:
        RESULTS + "/logs/summarize.log",
    shell:
        "python -m taskcodec.stages.summarize --report {input.reports:q} {params.machine}"
        " --metrics {output.metrics:q} --rate-distortion {output.rate_distortion:q}"
        " --rate-accuracy {output.rate_accuracy:q} > {log:q} 2>&1"
