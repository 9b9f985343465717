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


# Stage 6c: rate-accuracy of every way of sending the test images to each task's model (a scalable codec: against
# the bits of its base layer, which the task receives alone). The fine-tuned and scalable codecs are reported with
# the task they were trained for (finetune.tasks, scalable.task), the compressed-domain classifiers with classification.


rule report_task:
    input:
        unpack(task_report_inputs),
        prepared=results("prepared"),
        task_model=task_model("{task}"),
        classical=expand(results("eval", "classical", "{codec}", "test"), codec=CLASSICAL_CODECS),
        pretrained=per_codec(results("eval", "learned", CODEC, "test")),
    output:
        report(
            directory(machine_report("{task}")),
            patterns=["{name}.png"],
            caption="../report/report_task.rst",
            category="Rate–accuracy",
            subcategory="{task}",
        ),
    params:
        section=as_json(config["evaluate"]["report"]),
    log:
        results("logs", "report_task", "{task}.log"),
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
        machine=[machine_report(task) for task in TASKS],
    output:
        metrics=results("summary", "metrics.json"),
        rate_distortion=results("summary", "rate_distortion.csv"),
        rate_accuracy=results("summary", "rate_accuracy.csv"),
    log:
        results("logs", "summarize.log"),
    conda:
        CONDA_ENV
    shell:
        "python -m taskcodec.stages.summarize --report {input.reports:q} --machine {input.machine:q}"
        " --metrics {output.metrics:q} --rate-distortion {output.rate_distortion:q}"
        " --rate-accuracy {output.rate_accuracy:q} > {log:q} 2>&1"
