"""Django settings for MLaaS Portal, read strictly from the environment.

See README.md, "Configuration", for every variable, its default and effect.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from builds.queues import QueueSettings
from mlaas_portal.env import (
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_str,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
LOCAL_DIR = BASE_DIR / ".local"

DEBUG = env_bool("DEBUG", True)
_INSECURE_DEV_KEY = "dev-only-insecure-key-change-me-in-production-8f2c1e"
SECRET_KEY = env_str("SECRET_KEY", _INSECURE_DEV_KEY if DEBUG else None, required=not DEBUG)
if not DEBUG and (SECRET_KEY == _INSECURE_DEV_KEY or len(SECRET_KEY) < 50):
    raise ImproperlyConfigured("SECRET_KEY must be a unique value of at least 50 characters when DEBUG is off")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver" if DEBUG else "")
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS is required when DEBUG is off")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# Public URL of the portal: the only origin allowed by the upload buckets' CORS rules.
PORTAL_ORIGIN = env_str("PORTAL_ORIGIN", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_rq",
    "django_htmx",
    "mlaas_portal",
    "tenants",
    "builds",
    "billing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "mlaas_portal.middleware.PortalCSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "mlaas_portal.middleware.UserTimezoneMiddleware",
]

ROOT_URLCONF = "mlaas_portal.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "mlaas_portal.context_processors.portal",
            ]
        },
    }
]
WSGI_APPLICATION = "mlaas_portal.wsgi.application"
ASGI_APPLICATION = "mlaas_portal.asgi.application"

DATABASE_URL = env_url(
    "DATABASE_URL",
    f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
    schemes=("sqlite", "postgres", "postgresql", "pgsql"),
)
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # WAL lets the web process read while a worker writes.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL;",
        "transaction_mode": "IMMEDIATE",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file (not memory) so worker processes started by tests share the test database.
    # The directory may not exist yet in a fresh clone, whatever else the machine runs.
    LOCAL_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["TEST"] = {"NAME": str(LOCAL_DIR / f"test-db-{os.getpid()}.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_url("REDIS_URL", "redis://127.0.0.1:6379/0", schemes=("redis", "rediss", "unix"))
# Plan queues are not listed: plans are rows, and builds.queues names their queues (QueueSettings answers for them).
RQ_QUEUES = QueueSettings(
    (name, {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 3600})
    for name in ("default", "intake", "provisioning", "billing", "batch", "webhooks")
)
RQ_SHOW_ADMIN_LINK = True

# AWS: the local emulator by default; set AWS_ENDPOINT_URL to an empty value for real AWS.
AWS_ENDPOINT_URL = env_url("AWS_ENDPOINT_URL", "http://127.0.0.1:4566", schemes=("http", "https"), allow_empty=True)
AWS_REGION = env_str("AWS_REGION", "us-east-1", required=True)
AWS_ACCESS_KEY_ID = env_str("AWS_ACCESS_KEY_ID", "")
AWS_SECRET_ACCESS_KEY = env_str("AWS_SECRET_ACCESS_KEY", "")
AWS_CONNECT_TIMEOUT = env_int("AWS_CONNECT_TIMEOUT", 5, minimum=1)
AWS_READ_TIMEOUT = env_int("AWS_READ_TIMEOUT", 30, minimum=1)
MLAAS_EMULATOR_STATE = env_str("MLAAS_EMULATOR_STATE", str(LOCAL_DIR / "emulator.json"))
MLAAS_ENGINE = env_choice("MLAAS_ENGINE", "local", ("local", "sagemaker"))
MLAAS_PIPELINE_NAME = env_str("MLAAS_PIPELINE_NAME", "mlaas-shared-build-pipeline")
MLAAS_PIPELINE_ROLE_ARN = env_str("MLAAS_PIPELINE_ROLE_ARN", "")
MLAAS_RESOURCE_PREFIX = env_str("MLAAS_RESOURCE_PREFIX", "mlaas")
MLAAS_TAG_KEY = env_str("MLAAS_TAG_KEY", "mlaas:tenant")
MLAAS_PLAN_TAG_KEY = env_str("MLAAS_PLAN_TAG_KEY", "mlaas:plan")
MLAAS_ACCOUNT_CONCURRENT_LIMIT = env_int("MLAAS_ACCOUNT_CONCURRENT_LIMIT", 20, minimum=1)
# One rate budget in Redis for the SageMaker control-plane calls of every worker (core.ratebudget):
# all calls, and StartPipelineExecution on top (SageMaker allows it only a few times a second).
MLAAS_SAGEMAKER_CALLS_PER_SECOND = env_int("MLAAS_SAGEMAKER_CALLS_PER_SECOND", 10, minimum=1)
MLAAS_SAGEMAKER_STARTS_PER_SECOND = env_int("MLAAS_SAGEMAKER_STARTS_PER_SECOND", 2, minimum=1)
# REST API: each token gets its plan's api_requests_per_minute, a tenant's tokens together twice that; staff this.
MLAAS_API_STAFF_REQUESTS_PER_MINUTE = env_int("MLAAS_API_STAFF_REQUESTS_PER_MINUTE", 1200, minimum=1)
MLAAS_CREDENTIALS_TTL_SECONDS = env_int("MLAAS_CREDENTIALS_TTL_SECONDS", 3600, minimum=900)
MLAAS_WORKER_LOST_AFTER_SECONDS = env_int("MLAAS_WORKER_LOST_AFTER_SECONDS", 60, minimum=5)
MLAAS_STEP_TIMEOUT_SECONDS = env_int("MLAAS_STEP_TIMEOUT_SECONDS", 3600, minimum=10)
MLAAS_SCRATCH_DIR = env_str("MLAAS_SCRATCH_DIR", str(LOCAL_DIR / "scratch"))
# Test endpoints: how long a deploy may take to answer /ping before it fails, and the local runtime's
# model directories (one per endpoint and version, the artifact fetched with the tenant role's credentials).
MLAAS_ENDPOINT_START_TIMEOUT_SECONDS = env_int("MLAAS_ENDPOINT_START_TIMEOUT_SECONDS", 120, minimum=5)
# `make run`'s demo: the scheduler approves the demo tenant's first model version and deploys it to its test
# endpoint once its build has registered one (mlaas_portal.demo.demo_endpoint_ensure).
MLAAS_DEMO_ENDPOINT = env_bool("MLAAS_DEMO_ENDPOINT", False)
MLAAS_ENDPOINT_DIR = env_str("MLAAS_ENDPOINT_DIR", str(LOCAL_DIR / "endpoints"))
# Tenant webhooks may reach only public addresses over https; on, loopback and private addresses (and plain http)
# are allowed too, for a receiver on a developer's machine. Never on in production.
MLAAS_WEBHOOKS_ALLOW_PRIVATE = env_bool("MLAAS_WEBHOOKS_ALLOW_PRIVATE", False)
MLAAS_INTAKE_QUEUE_NAME = env_str("MLAAS_INTAKE_QUEUE_NAME", "mlaas-intake")
# An upload event that fails this many deliveries becomes a recorded rejection; the others keep flowing.
MLAAS_INTAKE_MAX_ATTEMPTS = env_int("MLAAS_INTAKE_MAX_ATTEMPTS", 5, minimum=1)
MLAAS_INTAKE_RETRY_BASE_SECONDS = env_int("MLAAS_INTAKE_RETRY_BASE_SECONDS", 5, minimum=0)
MLAAS_LEDGER_TABLE = env_str("MLAAS_LEDGER_TABLE", "mlaas-build-ledger")
# AWS Marketplace (SaaS): the product code switches it on (registration, notifications, hourly metering).
MLAAS_MARKETPLACE_PRODUCT_CODE = env_str("MLAAS_MARKETPLACE_PRODUCT_CODE", "")
MLAAS_MARKETPLACE_QUEUE_NAME = env_str("MLAAS_MARKETPLACE_QUEUE_NAME", "mlaas-marketplace")
MLAAS_MARKETPLACE_TOPIC_ARNS = env_list("MLAAS_MARKETPLACE_TOPIC_ARNS", "")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Login throttling (django-axes), kept in one block: after MLAAS_LOGIN_FAILURE_LIMIT wrong passwords for one
# username from one address, that pair is refused for MLAAS_LOGIN_COOLOFF_MINUTES (other users and addresses
# still log in). Attempts live in the database; a successful login clears the pair's count.
INSTALLED_APPS += ["axes"]
MIDDLEWARE += ["axes.middleware.AxesMiddleware"]  # last, as axes requires
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("MLAAS_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("MLAAS_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

# Public access-request form: at most this many submissions per client address and hour.
MLAAS_ACCESS_REQUESTS_PER_HOUR = env_int("MLAAS_ACCESS_REQUESTS_PER_HOUR", 5, minimum=1)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Content Security Policy (django-csp), sent on every page in every mode: scripts, styles, fonts and images
# from the portal's own origin only, so no inline <script>, no inline event handler, no style attribute and no
# third-party origin (plotly.js and htmx are served from static/vendor). JSON data blocks
# (<script type="application/json">, json_script) are not executed and so are allowed. `data:` images are
# Pico CSS's icons (select arrows, checkboxes) and Plotly's mode bar. The one other origin is where browsers
# upload (connect-src), the S3 endpoint: PortalCSPMiddleware adds it from AWS_ENDPOINT_URL / AWS_REGION.
# With DEBUG on, django-csp leaves Django's own 404/500 debug pages alone (they are inline-styled).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))},
    "loggers": {"botocore": {"level": "WARNING"}, "urllib3": {"level": "WARNING"}, "werkzeug": {"level": "WARNING"}},
}
# django-axes logs every successful login at INFO; failures and lockouts are WARNING and still logged.
LOGGING["loggers"]["axes"] = {"level": "WARNING"}

if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_CONTENT_TYPE_NOSNIFF = True
