"""Job submission, as Ray 2.x's ``ray.job_submission``: submit a shell
command to a cluster through its dashboard, follow it, stop it
(docs/jobs.md)."""
from pyray.job_submission.common import DriverInfo, JobDetails, JobInfo, JobStatus, JobType
from pyray.job_submission.sdk import JobSubmissionClient

__all__ = ["JobSubmissionClient", "JobStatus", "JobInfo", "JobDetails", "JobType",
           "DriverInfo"]
