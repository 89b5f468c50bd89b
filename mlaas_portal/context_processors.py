from django.conf import settings


def portal(request):
    user = getattr(request, "user", None)
    membership = None
    if user is not None and user.is_authenticated and not user.is_staff:
        membership = getattr(user, "membership", None)
    return {
        "portal_engine": settings.MLAAS_ENGINE,
        "portal_membership": membership,
        "portal_tenant": membership.tenant if membership else None,
    }
