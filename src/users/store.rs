//! User records (sealed in their own scope) and the appliance-wide e-mail blind index.

use crate::ids::{TenantId, UserId};
use crate::store::{BlindIndex, Collection, Scope, Store, StoreError, WriteSet};
use crate::tenants::absent_if_tenant_gone;
use crate::users::{Email, User, UserError, UserRef};

#[derive(Clone)]
pub struct UserStore {
    store: Store,
}

fn scope_of(tenant: Option<TenantId>) -> Scope {
    tenant.map_or(Scope::Appliance, Scope::Tenant)
}

impl UserStore {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn records(&self, tenant: Option<TenantId>) -> Result<Collection<UserId, User>, StoreError> {
        self.store.collection(scope_of(tenant), "users")
    }

    fn emails(&self) -> Result<BlindIndex<UserRef>, StoreError> {
        self.store.blind_index(Scope::Appliance, "user_emails")
    }

    /// Stores a new user and claims its e-mail in one transaction.
    pub fn create(&self, user: &User) -> Result<(), UserError> {
        let mut writes = WriteSet::default();
        writes.put(&self.records(user.tenant)?, &user.id, user)?;
        writes.claim(&self.emails()?, user.email.as_str(), &user.reference())?;
        match self.store.commit(writes) {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict { .. }) => Err(UserError::EmailTaken),
            Err(other) => Err(other.into()),
        }
    }

    /// The user, or `None` when there is none, also when its tenant no longer exists.
    pub fn get(&self, user: UserRef) -> Result<Option<User>, UserError> {
        Ok(absent_if_tenant_gone(
            self.records(user.tenant)
                .and_then(|records| records.get(&user.id)),
        )?)
    }

    pub fn find_by_email(&self, email: &Email) -> Result<Option<User>, UserError> {
        match self.emails()?.get(email.as_str())? {
            Some(reference) => self.get(reference),
            None => Ok(None),
        }
    }

    /// A keyed pseudonym of an e-mail, for counting failures without holding the address.
    pub fn email_pseudonym(&self, email: &str) -> Result<[u8; 32], UserError> {
        Ok(self.emails()?.pseudonym(&email.trim().to_lowercase()))
    }

    /// Replaces a user record (the e-mail never changes here).
    pub fn save(&self, user: &User) -> Result<(), UserError> {
        Ok(self.records(user.tenant)?.insert(&user.id, user)?)
    }

    /// Stages the release of these users' e-mail addresses in the appliance's index (a purged
    /// tenant's users: their records go with the tenant's scope, and their addresses may sign up
    /// again elsewhere).
    pub fn stage_release_emails(
        &self,
        writes: &mut WriteSet,
        users: &[User],
    ) -> Result<(), StoreError> {
        let emails = self.emails()?;
        for user in users {
            writes.release(&emails, user.email.as_str());
        }
        Ok(())
    }

    /// Users of one tenant, or the operators when `tenant` is `None`, oldest first.
    pub fn list(&self, tenant: Option<TenantId>) -> Result<Vec<User>, UserError> {
        self.records(tenant)?
            .scan()
            .map(|entry| entry.map(|(_, user)| user).map_err(UserError::from))
            .collect()
    }
}
