-- Experiment definitions (schemas/experiment.v1.json): the hypothesis, arms, metric, stage,
-- guardrails and, once decided, the verdict and what was done. Runs are tagged with the arm's
-- experiment_id elsewhere (workflows, OTel resource attributes); this table holds the plan.
CREATE TABLE IF NOT EXISTS experiments (
    experiment_id  VARCHAR PRIMARY KEY,
    hypothesis     VARCHAR,
    arms           VARCHAR[],
    metric         VARCHAR,
    stage          VARCHAR,
    status         VARCHAR,          -- defined, running, decided
    verdict        VARCHAR,          -- confirmed, rejected, inconclusive (once decided)
    definition     JSON,             -- the whole v1 object as last recorded
    created_at     TIMESTAMP,
    updated_at     TIMESTAMP,
    decided_at     TIMESTAMP
);
