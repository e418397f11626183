"""S3 default encryption as every AWS source reads it: one `ApplyServerSideEncryptionByDefault` rule
(SSEAlgorithm, KMSMasterKeyID) to an `Encryption`, whether the live API, a template or a plan holds it.

Each source extracts the values itself and settles what only it can: who manages a KMS key other
than `aws/s3` (kms:DescribeKey, or the key's declaration). Imports no AWS SDK.
"""

from __future__ import annotations

from auditor.model import Encryption, Unknown, UnknownCode

# S3 applies SSE-S3 (AES-256) to every bucket without a configuration since 2023-01-05.
S3_DEFAULT_ENCRYPTION_SOURCE = (
    "https://docs.aws.amazon.com/AmazonS3/latest/userguide/default-encryption-faq.html"
)
# SSEAlgorithm values and the scheme each names.
SSE_SCHEMES = {"AES256": "SSE-S3", "aws:kms": "SSE-KMS", "aws:kms:dsse": "DSSE-KMS"}
KMS_ALGORITHMS = frozenset(a for a, scheme in SSE_SCHEMES.items() if scheme != "SSE-S3")
_KEY_LEAVES = ("key_management", "key_id", "key_location")


def arn_region(value: str | None) -> str | None:
    """The region of an ARN (lower case), or None for anything else."""
    if value and value.startswith("arn:"):
        parts = value.split(":")
        if len(parts) > 3 and parts[3]:
            return parts[3].lower()
    return None


def is_aws_managed_key(key: object) -> bool:
    """No KMSMasterKeyID, or the `aws/s3` alias (by name or ARN): S3 uses the AWS managed key."""
    return key is None or (isinstance(key, str) and (key == "alias/aws/s3" or key.endswith(":alias/aws/s3")))


def s3_provider_default() -> Encryption:
    """SSE-S3, as S3 documents it for a bucket that sets no default encryption."""
    return Encryption(
        enabled=True,
        algorithm="AES256",
        scheme="SSE-S3",
        key_management="provider-managed",
        key_id=None,
        key_location=None,
        provider_default=True,
        source=S3_DEFAULT_ENCRYPTION_SOURCE,
    )


def s3_default_encryption(
    algorithm: str, key: str | Unknown | None, bucket_region: str | None, unknown: dict[str, Unknown]
) -> Encryption:
    """The encryption one default-encryption rule sets, its unknowns added to `unknown`.

    `key` is the KMSMasterKeyID, or why it is not known (then every key leaf is unknown with it). A
    KMS key other than `aws/s3` comes back with `key_management` None and `key_location` the
    region its ARN names, else the bucket's (S3 needs the key in its region): see `key_to_settle`.
    """
    scheme = SSE_SCHEMES.get(algorithm)
    if scheme is None:
        unsupported = Unknown(code=UnknownCode.NOT_SUPPORTED, reason=f"unknown SSEAlgorithm '{algorithm}'")
        for leaf in ("algorithm", *_KEY_LEAVES):
            unknown[f"encryption.{leaf}"] = unsupported
        return Encryption(
            enabled=True,
            algorithm=None,
            scheme=algorithm,
            key_management=None,
            key_id=None,
            key_location=None,
        )
    # SSE-KMS data keys come from a symmetric KMS key, which is AES-256-GCM (SYMMETRIC_DEFAULT):
    # https://docs.aws.amazon.com/kms/latest/developerguide/symm-asymm-choose-key-spec.html
    encryption = Encryption(
        enabled=True,
        algorithm="AES256",
        scheme=scheme,
        key_management="provider-managed",
        key_id=None,
        key_location=None,
    )
    if scheme == "SSE-S3":
        return encryption
    if isinstance(key, Unknown):
        for leaf in _KEY_LEAVES:
            unknown[f"encryption.{leaf}"] = key
        encryption.key_management = None
    elif not is_aws_managed_key(key):
        encryption.key_management = None
        encryption.key_location = arn_region(key) or bucket_region
    if isinstance(key, str):
        encryption.key_id = key
    return encryption


def key_to_settle(encryption: Encryption) -> str | None:
    """The KMS key whose manager `s3_default_encryption` left to the source, if there is one."""
    return encryption.key_id if encryption.key_management is None else None
