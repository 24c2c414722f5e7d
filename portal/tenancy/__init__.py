"""Multi-tenancy: host resolution, the tenant scope and tenant-owned models.

Three walls keep one clinic's rows away from another's:

1. Services and selectors take the tenant explicitly.
2. Tenant-owned models are queried through TenantScopedManager, which raises
   TenantScopeError outside an active scope and filters to the scope's tenant
   inside one, so a forgotten filter fails closed.
3. On PostgreSQL, row-level security policies (see portal.tenancy.rls) bind
   every statement to the tenant named in the `settle.tenant_id` setting that
   the scope writes on the connection.
"""
