"""AWS answers that mean "there is none": S3's and Organizations' "not found" error codes.

Keyed by operation (the part of an evidence `call` after `service:`). The scanner
(auditor.scan.aws_calls) records such an answer as an explicitly absent attribute, not an unknown one;
the source declaration (auditor.scan.aws_source) names this table as its `ABSENT_CODES`, where the
reports find it to show such answers as absent, not as errors. A leaf module: it imports nothing.
"""

from __future__ import annotations

ABSENT_CODES: dict[str, frozenset[str]] = {
    "GetBucketPolicy": frozenset({"NoSuchBucketPolicy"}),
    "GetBucketTagging": frozenset({"NoSuchTagSet"}),
    "GetBucketReplication": frozenset({"ReplicationConfigurationNotFoundError"}),
    "GetBucketEncryption": frozenset({"ServerSideEncryptionConfigurationNotFoundError"}),
    "GetPublicAccessBlock": frozenset({"NoSuchPublicAccessBlockConfiguration"}),
    # No AI services opt-out policy in effect, or no organization: the AWS default applies
    # (https://docs.aws.amazon.com/organizations/latest/APIReference/API_DescribeEffectivePolicy.html).
    "DescribeEffectivePolicy": frozenset(
        {"EffectivePolicyNotFoundException", "AWSOrganizationsNotInUseException"}
    ),
}
