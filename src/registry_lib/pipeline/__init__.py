"""Running the research pipeline: steps in order, content-hash caching, papermill, reports.

Example (from a shell):
    registry-lab reproduce                    # params/pipeline.yaml on its cohort
    registry-lab reproduce --cohort small     # the same steps on the small cohort
    registry-lab run cluster_investigation -p radius_km 5
"""

from registry_lib.pipeline.runner import Pipeline, StepResult, reproduce, run_study
from registry_lib.pipeline.spec import PipelineSpec, Step

__all__ = ["Pipeline", "PipelineSpec", "Step", "StepResult", "reproduce", "run_study"]
