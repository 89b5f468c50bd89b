"""Domain errors for AWS calls: each says whether a retry can help."""

from __future__ import annotations

RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "RequestTimeout",
        "ResourceLimitExceeded",
        "CapacityError",
        "LimitExceededException",
        "ConflictException",
    }
)
ACCESS_DENIED_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "InvalidAccessKeyId",
     "SignatureDoesNotMatch", "InvalidClientTokenId", "ExpiredToken", "AuthFailure"}
)
NOT_FOUND_CODES = frozenset(
    {"NoSuchBucket", "NoSuchKey", "NoSuchEntity", "ResourceNotFound", "ResourceNotFoundException",
     "NotFound", "404", "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist",
     "ValidationException.NotFound", "RepositoryNotFoundException", "ImageNotFoundException"}
)


class AwsError(Exception):
    """An AWS call failed. `retryable` tells callers whether trying again can help."""

    retryable = False

    def __init__(self, message: str, *, code: str = "", operation: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.operation = operation


class AwsRetryableError(AwsError):
    """Throttling, capacity or a transient fault: retry with backoff."""

    retryable = True


class AwsAccessDenied(AwsError):
    """IAM refused the call: a retry with the same credentials cannot help."""


class AwsNotFound(AwsError):
    """The named resource does not exist."""


class AwsValidationError(AwsError):
    """The request itself is wrong: fix the input, do not retry."""


def translate(exc: BaseException, operation: str = "") -> AwsError:
    """Turn a botocore exception into one of the domain errors above."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    if isinstance(exc, AwsError):
        return exc
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError,
                        ConnectionClosedError)):
        return AwsRetryableError(f"AWS endpoint unreachable: {exc}", code="Unreachable",
                                 operation=operation)
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = error.get("Message") or str(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        op = operation or getattr(exc, "operation_name", "")
        text = f"{op}: {code}: {message}" if op else f"{code}: {message}"
        if code in RETRYABLE_CODES or status in (429, 500, 502, 503, 504):
            return AwsRetryableError(text, code=code, operation=op)
        if code in ACCESS_DENIED_CODES or status == 403:
            return AwsAccessDenied(text, code=code, operation=op)
        if code in NOT_FOUND_CODES or status == 404:
            return AwsNotFound(text, code=code, operation=op)
        return AwsValidationError(text, code=code, operation=op)
    return AwsError(f"{operation}: {exc}" if operation else str(exc), operation=operation)
