//! The trees of privacy requests, all in the tenant's scope and sealed: the requests by id, their
//! packages by request id (one each), and the latest reminder notice.
//!
//! A tenant has few requests (tens a month), so lists read them all; a look-up by subject compares
//! keyed tokens inside the sealed requests, never an identifier in clear.

use crate::ids::{RequestId, TenantId};
use crate::privacy::requests::package::Package;
use crate::privacy::requests::reminders::Notice;
use crate::privacy::requests::PrivacyRequest;
use crate::store::{Collection, Scope, Store, StoreError, WriteSet};

const REQUESTS: &str = "privacy_requests";
const PACKAGES: &str = "privacy_request_packages";
const NOTICES: &str = "privacy_request_notices";
const LATEST_NOTICE: &str = "latest";

/// The privacy requests of every tenant.
#[derive(Clone)]
pub struct RequestStore {
    store: Store,
}

impl RequestStore {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub fn requests(
        &self,
        tenant: TenantId,
    ) -> Result<Collection<RequestId, PrivacyRequest>, StoreError> {
        self.store.collection(Scope::Tenant(tenant), REQUESTS)
    }

    pub fn packages(&self, tenant: TenantId) -> Result<Collection<RequestId, Package>, StoreError> {
        self.store.collection(Scope::Tenant(tenant), PACKAGES)
    }

    fn notices(&self, tenant: TenantId) -> Result<Collection<&'static str, Notice>, StoreError> {
        self.store.collection(Scope::Tenant(tenant), NOTICES)
    }

    pub fn get(
        &self,
        tenant: TenantId,
        id: RequestId,
    ) -> Result<Option<PrivacyRequest>, StoreError> {
        self.requests(tenant)?.get(&id)
    }

    /// Writes one request, durably.
    pub fn put(&self, tenant: TenantId, request: &PrivacyRequest) -> Result<(), StoreError> {
        self.requests(tenant)?.insert(&request.id, request)
    }

    /// Writes a request and its package together (one commit).
    pub fn put_with_package(
        &self,
        tenant: TenantId,
        request: &PrivacyRequest,
        package: &Package,
    ) -> Result<(), StoreError> {
        let mut writes = WriteSet::default();
        writes.put(&self.requests(tenant)?, &request.id, request)?;
        writes.put(&self.packages(tenant)?, &request.id, package)?;
        self.store.commit(writes)
    }

    /// Every request of the tenant, newest first.
    pub fn list(&self, tenant: TenantId) -> Result<Vec<PrivacyRequest>, StoreError> {
        self.requests(tenant)?
            .scan_newest_first(None)
            .map(|entry| entry.map(|(_, request)| request))
            .collect()
    }

    /// The requests about the subject with this keyed token, newest first.
    pub fn about(
        &self,
        tenant: TenantId,
        token: &[u8; 32],
    ) -> Result<Vec<PrivacyRequest>, StoreError> {
        Ok(self
            .list(tenant)?
            .into_iter()
            .filter(|request| &request.subject_token == token)
            .collect())
    }

    pub fn package(&self, tenant: TenantId, id: RequestId) -> Result<Option<Package>, StoreError> {
        self.packages(tenant)?.get(&id)
    }

    /// Deletes a package, durably.
    pub fn remove_package(&self, tenant: TenantId, id: RequestId) -> Result<(), StoreError> {
        self.packages(tenant)?.remove(&id)
    }

    /// Every package's request id and expiry, for the scheduler's purge.
    pub fn package_expiries(
        &self,
        tenant: TenantId,
    ) -> Result<Vec<(RequestId, chrono::DateTime<chrono::Utc>)>, StoreError> {
        self.packages(tenant)?
            .scan()
            .map(|entry| entry.map(|(id, package)| (id, package.expires_at)))
            .collect()
    }

    pub fn latest_notice(&self, tenant: TenantId) -> Result<Option<Notice>, StoreError> {
        self.notices(tenant)?.get(&LATEST_NOTICE)
    }

    pub fn put_notice(&self, tenant: TenantId, notice: &Notice) -> Result<(), StoreError> {
        self.notices(tenant)?.insert(&LATEST_NOTICE, notice)
    }
}
