# Stage 6b: rate-distortion tables, BD-rates, plots and a reconstruction grid per dataset.
# The reports and the summary are cheap: local rules (Snakefile), never submitted to a cluster.


rule report:
    input:
        unpack(dataset_inputs),
        learned=lambda wc: per_codec(results("eval", "learned", CODEC, "{dataset}"), dataset=wc.dataset),
        scalable=lambda wc: per_scalable(results("eval", "scalable", SCALABLE, "{dataset}"), dataset=wc.dataset),
        variable_rate=lambda wc: per_variable_rate(results("eval", "variable_rate", VARIABLE_POINT, "{dataset}"),
                                                   dataset=wc.dataset),
        classical=expand(results("eval", "classical", "{codec}", "{{dataset}}"), codec=CLASSICAL_CODECS),
        references=reference_inputs,
    output:
        report(
            directory(results("report", "{dataset}")),
            patterns=["{name}.png"],
            caption="../report/report.rst",
            category="Rate–distortion",
            subcategory="{dataset}",
        ),
    params:
        section=as_json(config["evaluate"]["report"]),
        source=dataset_args,
    log:
        results("logs", "report", "{dataset}.log"),
    # in CI this process has died of a segmentation fault in pandas' CSV reader on its first per_image.csv (not
    # reproduced locally; evaluate_codec once crashed the same way, so the cause is not this stage's); its output is
    # atomic, so one more attempt is safe and Snakemake says it made one
    retries: 1
    conda:
        CONDA_ENV
    shell:
        "python -m taskcodec.stages.report --params {params.section:q} --dataset {wildcards.dataset}"
        " --eval {input.learned:q} {input.scalable:q} {input.variable_rate:q} {input.classical:q} {params.source}"
        " --out {output:q}"
        " > {log:q} 2>&1"


# Stage 6c: rate-accuracy of every way of sending the test images to the task model (a scalable codec: against the
# bits of its base layer, which the task receives alone).


rule report_task:
    input:
        prepared=results("prepared"),
        task_model=TASK_MODEL,
        classical=expand(results("eval", "classical", "{codec}", "test"), codec=CLASSICAL_CODECS),
        pretrained=per_codec(results("eval", "learned", CODEC, "test")),
        finetuned=[results("eval", "finetuned", TUNED.format(**point), "test") for point in finetune_points()],
        scalable=per_scalable(results("eval", "scalable", SCALABLE, "test")),
        scalable_logs=per_scalable(results("scalable", SCALABLE, "train_log.csv")),
        latent=[] if LATENT_SKIP_REASON else per_codec(results("latent", CODEC, "metrics.json")),
        joint=(per_codec(results("joint", CODEC))
               if config["latent_classifier"]["joint"]["enabled"] and not LATENT_SKIP_REASON else []),
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
        results("logs", "report_task.log"),
    conda:
        CONDA_ENV
    shell:
        "python -m taskcodec.stages.report_task --params {params.section:q} --task-model {input.task_model:q}"
        " --manifest {input.prepared:q}/manifest.csv --classical {input.classical:q}"
        " --pretrained {input.pretrained:q} --finetuned {input.finetuned:q} --scalable {input.scalable:q}"
        " --scalable-logs {input.scalable_logs:q}"
        " --latent {input.latent:q}"
        " --joint {input.joint:q} --out {output:q} > {log:q} 2>&1"


# Stage 6d: headline numbers for DVC (`dvc metrics show`, `dvc plots show`) and the final summary.


rule summarize:
    input:
        reports=report_outputs(),
        machine=[MACHINE_REPORT] if MACHINE else [],
    output:
        metrics=results("summary", "metrics.json"),
        rate_distortion=results("summary", "rate_distortion.csv"),
        rate_accuracy=results("summary", "rate_accuracy.csv"),
    params:
        machine=lambda wc, input: f"--machine {shlex.quote(input.machine[0])}" if MACHINE else "",
    log:
        results("logs", "summarize.log"),
    conda:
        CONDA_ENV
    shell:
        "python -m taskcodec.stages.summarize --report {input.reports:q} {params.machine}"
        " --metrics {output.metrics:q} --rate-distortion {output.rate_distortion:q}"
        " --rate-accuracy {output.rate_accuracy:q} > {log:q} 2>&1"
