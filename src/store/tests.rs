use super::*;
use crate::ids::UserId;

fn settings(dir: &Path) -> StoreSettings {
    StoreSettings {
        data_dir: dir.to_path_buf(),
        cache_capacity_bytes: 8 * 1024 * 1024,
        min_free_disk_bytes: 0,
    }
}

fn new_store(dir: &Path) -> Store {
    let key_path = dir.join("master.key");
    MasterKey::create_file(&key_path).unwrap();
    Store::open(
        &settings(dir),
        MasterKey::load(&key_path).unwrap(),
        OpenMode::CreateIfMissing,
    )
    .unwrap()
}

fn add_tenant(store: &Store) -> Scope {
    let scope = Scope::Tenant(TenantId::new());
    let mut writes = WriteSet::default();
    writes.create_scope_keys(store, scope, false).unwrap();
    store.commit(writes).unwrap();
    scope
}

#[test]
fn records_round_trip_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id = UserId::new();
    {
        let store = new_store(dir.path());
        let users = store
            .collection::<UserId, String>(Scope::Appliance, "users")
            .unwrap();
        users
            .insert(&id, &"someone@example.com".to_owned())
            .unwrap();
    }
    let store = Store::open(
        &settings(dir.path()),
        MasterKey::load(&dir.path().join("master.key")).unwrap(),
        OpenMode::ExistingOnly,
    )
    .unwrap();
    let users = store
        .collection::<UserId, String>(Scope::Appliance, "users")
        .unwrap();
    assert_eq!(
        users.get(&id).unwrap().as_deref(),
        Some("someone@example.com")
    );
}

#[test]
fn a_sealed_value_copied_to_another_record_or_tenant_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let tenant_a = add_tenant(&store);
    let tenant_b = add_tenant(&store);
    let users_a = store
        .collection::<UserId, String>(tenant_a, "users")
        .unwrap();
    let users_b = store
        .collection::<UserId, String>(tenant_b, "users")
        .unwrap();
    let original = UserId::new();
    users_a.insert(&original, &"secret".to_owned()).unwrap();
    let sealed = users_a
        .raw_tree()
        .get(original.to_key_bytes())
        .unwrap()
        .unwrap();

    let other_record = UserId::new();
    users_a
        .raw_tree()
        .insert(other_record.to_key_bytes(), sealed.clone())
        .unwrap();
    assert!(matches!(
        users_a.get(&other_record),
        Err(StoreError::Unsealable { .. })
    ));

    users_b
        .raw_tree()
        .insert(original.to_key_bytes(), sealed.clone())
        .unwrap();
    assert!(matches!(
        users_b.get(&original),
        Err(StoreError::Unsealable { .. })
    ));

    let other_collection = store
        .collection::<UserId, String>(tenant_a, "contacts")
        .unwrap();
    other_collection
        .raw_tree()
        .insert(original.to_key_bytes(), sealed)
        .unwrap();
    assert!(other_collection.get(&original).is_err());

    assert_eq!(users_a.get(&original).unwrap().as_deref(), Some("secret"));
}

#[test]
fn a_wrong_master_key_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(new_store(dir.path()));
    let other_key = dir.path().join("other.key");
    MasterKey::create_file(&other_key).unwrap();
    let error = Store::open(
        &settings(dir.path()),
        MasterKey::load(&other_key).unwrap(),
        OpenMode::ExistingOnly,
    )
    .unwrap_err();
    assert!(
        matches!(error, StoreError::WrongMasterKey { .. }),
        "{error}"
    );
}

#[test]
fn claims_are_unique_and_a_conflict_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let index = store
        .blind_index::<UserId>(Scope::Appliance, "email")
        .unwrap();
    let users = store
        .collection::<UserId, String>(Scope::Appliance, "users")
        .unwrap();
    let first = UserId::new();
    let mut writes = WriteSet::default();
    writes.put(&users, &first, &"first".to_owned()).unwrap();
    writes.claim(&index, "a@b.c", &first).unwrap();
    store.commit(writes).unwrap();

    let second = UserId::new();
    let mut writes = WriteSet::default();
    writes.put(&users, &second, &"second".to_owned()).unwrap();
    writes.claim(&index, "a@b.c", &second).unwrap();
    assert!(matches!(
        store.commit(writes),
        Err(StoreError::Conflict { .. })
    ));
    assert!(
        users.get(&second).unwrap().is_none(),
        "a failed commit left a record"
    );
    assert_eq!(index.get("a@b.c").unwrap(), Some(first));
    assert_eq!(index.get("x@b.c").unwrap(), None);
}

#[test]
fn writes_are_refused_below_the_disk_reserve() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("master.key");
    drop(new_store(dir.path()));
    let mut strict = settings(dir.path());
    strict.min_free_disk_bytes = u64::MAX;
    let store = Store::open(
        &strict,
        MasterKey::load(&key_path).unwrap(),
        OpenMode::ExistingOnly,
    )
    .unwrap();
    let users = store
        .collection::<UserId, String>(Scope::Appliance, "users")
        .unwrap();
    let error = users.insert(&UserId::new(), &"x".to_owned()).unwrap_err();
    assert!(matches!(error, StoreError::DiskFull { .. }));
    assert!(error.to_string().contains("reserve"));
    assert!(users.is_empty());
}

#[test]
fn an_uninitialised_directory_is_not_created_by_existing_only() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("master.key");
    MasterKey::create_file(&key_path).unwrap();
    let error = Store::open(
        &settings(dir.path()),
        MasterKey::load(&key_path).unwrap(),
        OpenMode::ExistingOnly,
    )
    .unwrap_err();
    assert!(matches!(error, StoreError::NotInitialised(_)));
    assert!(!dir.path().join("db").exists());
}

#[test]
fn key_files_must_be_private_and_32_bytes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    std::fs::write(&path, [0u8; 31]).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(
        MasterKey::load(&path),
        Err(KeyError::WrongLength { found: 31, .. })
    ));
    std::fs::write(&path, [7u8; 32]).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        MasterKey::load(&path),
        Err(KeyError::TooOpen { .. })
    ));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(MasterKey::load(&path).is_ok());
    assert!(matches!(
        MasterKey::create_file(&path),
        Err(KeyError::Exists(_))
    ));
}

#[test]
fn a_second_opener_is_told_the_database_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _first = new_store(dir.path());
    let error = Store::open(
        &settings(dir.path()),
        MasterKey::load(&dir.path().join("master.key")).unwrap(),
        OpenMode::ExistingOnly,
    )
    .unwrap_err();
    assert!(matches!(error, StoreError::Locked(_)), "{error}");
    assert!(error.to_string().contains("stop `rapport serve` first"));
}

#[test]
fn after_a_master_rotation_only_the_new_key_opens_and_new_scopes_use_it() {
    let dir = tempfile::tempdir().unwrap();
    let new_path = dir.path().join("new.key");
    MasterKey::create_file(&new_path).unwrap();
    let id = UserId::new();
    let (before, after) = {
        let store = new_store(dir.path());
        let before = add_tenant(&store);
        store
            .collection::<UserId, String>(before, "users")
            .unwrap()
            .insert(&id, &"before".to_owned())
            .unwrap();
        let rotation = store
            .rotate_master(MasterKey::load_file(&new_path).unwrap())
            .unwrap();
        // Appliance data, index and audit keys, and the tenant's data and index keys.
        assert_eq!(rotation.wrapped_keys, 5);
        assert_ne!(rotation.old_fingerprint, rotation.new_fingerprint);
        // A scope created after the rotation is wrapped under the new key by the same handle.
        let after = add_tenant(&store);
        store
            .collection::<UserId, String>(after, "users")
            .unwrap()
            .insert(&id, &"after".to_owned())
            .unwrap();
        (before, after)
    };
    let old = Store::open(
        &settings(dir.path()),
        MasterKey::load(&dir.path().join("master.key")).unwrap(),
        OpenMode::ExistingOnly,
    );
    assert!(matches!(old, Err(StoreError::WrongMasterKey { .. })));
    let store = Store::open(
        &settings(dir.path()),
        MasterKey::load(&new_path).unwrap(),
        OpenMode::ExistingOnly,
    )
    .unwrap();
    for (scope, expected) in [(before, "before"), (after, "after")] {
        let users = store.collection::<UserId, String>(scope, "users").unwrap();
        assert_eq!(users.get(&id).unwrap().as_deref(), Some(expected));
    }
}

#[test]
fn resealing_moves_every_value_to_the_new_key_and_skips_values_already_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let tenant = add_tenant(&store);
    let other = add_tenant(&store);
    let ids: Vec<UserId> = (0..1200).map(|_| UserId::new()).collect();
    let users = store.collection::<UserId, String>(tenant, "users").unwrap();
    let mut writes = WriteSet::default();
    for (n, id) in ids.iter().enumerate() {
        writes.put(&users, id, &format!("user {n}")).unwrap();
    }
    store.commit(writes).unwrap();
    store
        .collection::<UserId, String>(other, "users")
        .unwrap()
        .insert(&ids[0], &"other".to_owned())
        .unwrap();
    let old_key = store.data_key_usage(tenant).unwrap().current;
    let other_before = store.data_key_usage(other).unwrap();

    let new_key = store.add_data_key(tenant).unwrap();
    // A record written after the new key exists is sealed under it, and the re-seal skips it.
    let late = UserId::new();
    store
        .collection::<UserId, String>(tenant, "users")
        .unwrap()
        .insert(&late, &"late".to_owned())
        .unwrap();
    let usage = store.data_key_usage(tenant).unwrap();
    assert_eq!(usage.current, new_key);
    assert_eq!(usage.older, vec![old_key]);
    assert_eq!(usage.outdated(), 1200);
    assert_eq!(usage.count(new_key), 1);
    // Nothing is retired while a value still uses the old key.
    assert!(store.retire_unused_data_keys(tenant).unwrap().is_empty());

    let mut steps = Vec::new();
    let report = store
        .reseal_scope(tenant, Some(700), |step| steps.push(step.resealed))
        .unwrap();
    assert_eq!(report.resealed, 700);
    assert!(!report.complete);
    // Batches are bounded: 512, then the 188 left of the budget.
    assert_eq!(steps, vec![512, 700]);
    assert_eq!(store.data_key_usage(tenant).unwrap().count(old_key), 500);

    let report = store.reseal_scope(tenant, None, |_| {}).unwrap();
    assert_eq!(report.resealed, 500);
    assert!(report.complete);
    assert_eq!(
        store.retire_unused_data_keys(tenant).unwrap(),
        vec![old_key]
    );
    let usage = store.data_key_usage(tenant).unwrap();
    assert!(usage.older.is_empty());
    assert_eq!(usage.count(new_key), 1201);
    let users = store.collection::<UserId, String>(tenant, "users").unwrap();
    assert_eq!(users.get(&late).unwrap().as_deref(), Some("late"));
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(users.get(id).unwrap(), Some(format!("user {n}")));
    }
    // Another tenant's values and keys are untouched, and the appliance's key is never retired.
    let other_after = store.data_key_usage(other).unwrap();
    assert_eq!(other_after.current, other_before.current);
    assert_eq!(other_after.values, other_before.values);
    store.add_data_key(Scope::Appliance).unwrap();
    assert!(store
        .retire_unused_data_keys(Scope::Appliance)
        .unwrap()
        .is_empty());
}

fn tenant_of(scope: Scope) -> TenantId {
    match scope {
        Scope::Tenant(tenant) => tenant,
        Scope::Appliance => unreachable!("a tenant scope"),
    }
}

#[test]
fn subject_sealed_values_open_transparently_and_not_after_the_key_is_destroyed() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let scope = add_tenant(&store);
    let tenant = tenant_of(scope);
    let notes = store.collection::<UserId, String>(scope, "notes").unwrap();
    let (jo, kim, plain) = (UserId::new(), UserId::new(), UserId::new());
    let mut writes = WriteSet::default();
    writes
        .put_for(
            &notes,
            &jo,
            &"about jo".to_owned(),
            Some("email:jo@example.org"),
        )
        .unwrap();
    writes
        .put_for(
            &notes,
            &kim,
            &"about kim".to_owned(),
            Some("email:kim@example.org"),
        )
        .unwrap();
    writes
        .put_for(&notes, &plain, &"no one".to_owned(), None)
        .unwrap();
    store.commit(writes).unwrap();
    assert_eq!(store.subject_key_count(tenant).unwrap(), 2);
    // A second value for jo reuses jo's key.
    let jo_again = UserId::new();
    let mut writes = WriteSet::default();
    writes
        .put_for(
            &notes,
            &jo_again,
            &"jo again".to_owned(),
            Some("email:jo@example.org"),
        )
        .unwrap();
    store.commit(writes).unwrap();
    assert_eq!(store.subject_key_count(tenant).unwrap(), 2);
    let jo_key = notes.subject_key_of(&jo).unwrap().unwrap();
    assert_eq!(notes.subject_key_of(&jo_again).unwrap(), Some(jo_key));
    assert_ne!(notes.subject_key_of(&kim).unwrap(), Some(jo_key));
    assert_eq!(notes.subject_key_of(&plain).unwrap(), None);
    // Subject keys are not the tenant's data keys: rotation does not count those values.
    assert_eq!(store.data_key_usage(scope).unwrap().outdated(), 0);
    let kept = notes.sealed_bytes(&jo).unwrap().unwrap();

    // Reads open either kind, also after a reopen (nothing cached).
    drop(notes);
    drop(store);
    let store = Store::open(
        &settings(dir.path()),
        MasterKey::load(&dir.path().join("master.key")).unwrap(),
        OpenMode::ExistingOnly,
    )
    .unwrap();
    let notes = store.collection::<UserId, String>(scope, "notes").unwrap();
    assert_eq!(notes.get(&jo).unwrap().as_deref(), Some("about jo"));
    assert_eq!(notes.get(&plain).unwrap().as_deref(), Some("no one"));
    assert_eq!(notes.scan().count(), 4);

    let token = store.subject_token(tenant, "email:jo@example.org").unwrap();
    assert_eq!(
        store.destroy_subject_key(tenant, &token).unwrap(),
        Some(jo_key)
    );
    assert_eq!(store.destroy_subject_key(tenant, &token).unwrap(), None);
    // The bytes a copy of the database file still holds no longer open, nor does the live value.
    assert!(matches!(
        notes.open_sealed(&jo, &kept),
        Err(StoreError::SubjectErased { .. })
    ));
    assert!(matches!(
        notes.get(&jo_again),
        Err(StoreError::SubjectErased { .. })
    ));
    assert_eq!(notes.keys_sealed_under(jo_key).unwrap(), vec![jo, jo_again]);
    assert_eq!(notes.get(&kim).unwrap().as_deref(), Some("about kim"));
    // A new value for jo gets a new key.
    let mut writes = WriteSet::default();
    let later = UserId::new();
    writes
        .put_for(
            &notes,
            &later,
            &"later".to_owned(),
            Some("email:jo@example.org"),
        )
        .unwrap();
    store.commit(writes).unwrap();
    assert_ne!(notes.subject_key_of(&later).unwrap(), Some(jo_key));
    assert_eq!(notes.get(&later).unwrap().as_deref(), Some("later"));
}

#[test]
fn key_rotation_leaves_subject_sealed_values_readable() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let scope = add_tenant(&store);
    let notes = store.collection::<UserId, String>(scope, "notes").unwrap();
    let ids: Vec<UserId> = (0..20).map(|_| UserId::new()).collect();
    let mut writes = WriteSet::default();
    for (n, id) in ids.iter().enumerate() {
        let subject = format!("email:person{}@example.org", n % 4);
        writes
            .put_for(&notes, id, &format!("note {n}"), Some(&subject))
            .unwrap();
    }
    store.commit(writes).unwrap();
    let old_key = store.data_key_usage(scope).unwrap().current;
    store.add_data_key(scope).unwrap();
    let report = store.reseal_scope(scope, None, |_| {}).unwrap();
    // The wrapped subject keys and their tokens (4 + 4) are re-sealed; the values are not.
    assert_eq!(report.resealed, 8);
    assert_eq!(store.retire_unused_data_keys(scope).unwrap(), vec![old_key]);
    let new_master = dir.path().join("next.key");
    MasterKey::create_file(&new_master).unwrap();
    store
        .rotate_master(MasterKey::load_file(&new_master).unwrap())
        .unwrap();
    drop(notes);
    drop(store);
    let store = Store::open(
        &settings(dir.path()),
        MasterKey::load(&new_master).unwrap(),
        OpenMode::ExistingOnly,
    )
    .unwrap();
    let notes = store.collection::<UserId, String>(scope, "notes").unwrap();
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(notes.get(id).unwrap(), Some(format!("note {n}")));
    }
}

#[test]
fn a_destroyed_scope_loses_its_keys_and_trees_even_across_a_reopen_and_others_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let id = UserId::new();
    let (gone, kept, sealed) = {
        let store = new_store(dir.path());
        let (gone, kept) = (add_tenant(&store), add_tenant(&store));
        for scope in [gone, kept] {
            let notes = store.collection::<UserId, String>(scope, "notes").unwrap();
            notes.insert(&id, &"a tenant's note".to_owned()).unwrap();
            store
                .collection::<UserId, String>(scope, "other_notes")
                .unwrap()
                .insert(&id, &"another".to_owned())
                .unwrap();
        }
        let notes = store.collection::<UserId, String>(gone, "notes").unwrap();
        let sealed = notes.sealed_bytes(&id).unwrap().unwrap();
        assert!(store
            .open_with_stored_keys(gone, "notes", &id.to_key_bytes(), &sealed)
            .is_ok());
        let Scope::Tenant(tenant) = gone else {
            unreachable!()
        };
        let destroyed = store.destroy_scope(tenant).unwrap();
        assert_eq!(
            destroyed,
            ScopeDestroyed {
                keys: 2,
                trees: 2,
                records: 2
            }
        );
        // Again: nothing left, nothing fails (a purge cut off is finished this way).
        assert_eq!(
            store.destroy_scope(tenant).unwrap(),
            ScopeDestroyed::default()
        );
        (gone, kept, sealed)
    };
    let store = Store::open(
        &settings(dir.path()),
        MasterKey::load(&dir.path().join("master.key")).unwrap(),
        OpenMode::ExistingOnly,
    )
    .unwrap();
    assert!(matches!(
        store.open_with_stored_keys(gone, "notes", &id.to_key_bytes(), &sealed),
        Err(StoreError::UnknownScope(scope)) if scope == gone
    ));
    assert!(matches!(
        store.collection::<UserId, String>(gone, "notes"),
        Err(StoreError::UnknownScope(_))
    ));
    let notes = store.collection::<UserId, String>(kept, "notes").unwrap();
    assert_eq!(notes.get(&id).unwrap().as_deref(), Some("a tenant's note"));
}

type Counters = Collection<(crate::ids::ImportId, u64), u64>;

/// Every record of tree `name` in `snapshot`, opened through `collection`: key number → value.
fn snapshot_of(
    snapshot: &Snapshot<'_>,
    name: &str,
    collection: &Counters,
) -> std::collections::BTreeMap<u64, u64> {
    let index = snapshot
        .trees()
        .iter()
        .position(|tree| tree == name.as_bytes())
        .unwrap();
    let mut found = std::collections::BTreeMap::new();
    snapshot
        .read_tree(index, |key, value| {
            let key = <(crate::ids::ImportId, u64)>::from_key_bytes(key).unwrap();
            assert!(found
                .insert(key.1, collection.open_sealed(&key, value)?)
                .is_none());
            Ok::<(), StoreError>(())
        })
        .unwrap();
    found
}

#[test]
fn a_snapshot_reads_every_tree_as_it_was_when_it_began_while_writes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let log = crate::ids::ImportId::new();
    let first: Counters = store.collection(Scope::Appliance, "first").unwrap();
    let second: Counters = store.collection(Scope::Appliance, "second").unwrap();
    for n in 1..=100 {
        first.insert(&(log, n), &n).unwrap();
        second.insert(&(log, n), &(n * 10)).unwrap();
    }
    let snapshot = store.snapshot().unwrap();
    let mut trees: Vec<&[u8]> = snapshot.trees().iter().map(Vec::as_slice).collect();
    trees.retain(|name| name.starts_with(b"a/"));
    assert_eq!(trees, [&b"a/first"[..], b"a/second"]);
    // Before any reading: change, delete and add records in both trees.
    first.insert(&(log, 5), &500).unwrap();
    first.remove(&(log, 7)).unwrap();
    first.insert(&(log, 200), &200).unwrap();
    second.insert(&(log, 50), &0).unwrap();
    second.remove(&(log, 60)).unwrap();
    // While the first tree is read: records behind and ahead of the reading, in one commit.
    let index = snapshot
        .trees()
        .iter()
        .position(|tree| tree == b"a/first")
        .unwrap();
    let mut read = std::collections::BTreeMap::new();
    snapshot
        .read_tree(index, |key, value| {
            let key = <(crate::ids::ImportId, u64)>::from_key_bytes(key).unwrap();
            if key.1 == 50 {
                let mut writes = WriteSet::default();
                writes.put(&first, &(log, 10), &1).unwrap();
                writes.put(&first, &(log, 80), &1).unwrap();
                writes.remove(&first, &(log, 90));
                writes.put(&second, &(log, 70), &1).unwrap();
                store.commit(writes).unwrap();
            }
            assert!(read
                .insert(key.1, first.open_sealed(&key, value)?)
                .is_none());
            Ok::<(), StoreError>(())
        })
        .unwrap();
    let expected_first: std::collections::BTreeMap<u64, u64> = (1..=100).map(|n| (n, n)).collect();
    assert_eq!(read, expected_first);
    let expected_second: std::collections::BTreeMap<u64, u64> =
        (1..=100).map(|n| (n, n * 10)).collect();
    assert_eq!(snapshot_of(&snapshot, "a/second", &second), expected_second);
    let next_id = snapshot.next_id();
    drop(snapshot);
    // The writes themselves all landed, and ids go on above the snapshot's.
    assert_eq!(first.get(&(log, 5)).unwrap(), Some(500));
    assert_eq!(first.get(&(log, 7)).unwrap(), None);
    assert_eq!(first.get(&(log, 80)).unwrap(), Some(1));
    assert_eq!(first.get(&(log, 90)).unwrap(), None);
    assert_eq!(second.get(&(log, 60)).unwrap(), None);
    assert!(store.generate_id().unwrap() >= next_id);
    // A second snapshot sees the new state (the pre-images of the first are gone).
    let again = store.snapshot().unwrap();
    let now = snapshot_of(&again, "a/first", &first);
    assert_eq!(now.get(&5), Some(&500));
    assert_eq!(now.get(&200), Some(&200));
    assert!(!now.contains_key(&7));
}

#[test]
fn a_snapshot_never_holds_half_of_a_commit_made_during_it() {
    snapshot_sees_commits_whole(|store, writes| store.commit(writes).unwrap());
}

#[test]
fn a_snapshot_never_holds_half_of_a_redo_commit_made_during_it() {
    snapshot_sees_commits_whole(|store, writes| store.commit_redo(writes).unwrap());
}

fn snapshot_sees_commits_whole(commit: fn(&Store, WriteSet)) {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let log = crate::ids::ImportId::new();
    let left: Counters = store.collection(Scope::Appliance, "left").unwrap();
    let right: Counters = store.collection(Scope::Appliance, "right").unwrap();
    for n in 0..2_000 {
        left.insert(&(log, n), &0).unwrap();
        right.insert(&(log, n), &0).unwrap();
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let left: Counters = store.collection(Scope::Appliance, "left").unwrap();
            let right: Counters = store.collection(Scope::Appliance, "right").unwrap();
            let mut round = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                round += 1;
                let mut writes = WriteSet::default();
                for n in (round % 7..2_000).step_by(97) {
                    writes.put(&left, &(log, n), &round).unwrap();
                    writes.put(&right, &(log, n), &round).unwrap();
                }
                commit(&store, writes);
            }
            round
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(50));
    let snapshot = store.snapshot().unwrap();
    let seen_left = snapshot_of(&snapshot, "a/left", &left);
    let seen_right = snapshot_of(&snapshot, "a/right", &right);
    drop(snapshot);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let rounds = writer.join().unwrap();
    assert!(rounds > 2, "the writer made {rounds} commits");
    assert_eq!(seen_left.len(), 2_000);
    assert_eq!(
        seen_left, seen_right,
        "a commit is in the snapshot whole or not at all"
    );
}

/// Two trees with records 0..10 (value = number) and a write set that changes both: puts 100 in
/// `left` 0..5, removes `right` 5..10, claims "taken" in an index.
fn redo_fixture(store: &Store) -> (Counters, Counters, BlindIndex<u64>, WriteSet) {
    let log = crate::ids::ImportId::from_bytes([0; 16]);
    let left: Counters = store.collection(Scope::Appliance, "left").unwrap();
    let right: Counters = store.collection(Scope::Appliance, "right").unwrap();
    let index = store.blind_index::<u64>(Scope::Appliance, "names").unwrap();
    for n in 0..10 {
        left.insert(&(log, n), &n).unwrap();
        right.insert(&(log, n), &n).unwrap();
    }
    let mut writes = WriteSet::default();
    for n in 0..5 {
        writes.put(&left, &(log, n), &100).unwrap();
    }
    for n in 5..10 {
        writes.remove(&right, &(log, n));
    }
    writes.claim(&index, "taken", &1).unwrap();
    (left, right, index, writes)
}

/// Whether the fixture's write set has landed whole (`Some(true)`), not at all (`Some(false)`)
/// or in part (`None`).
fn redo_landed(left: &Counters, right: &Counters, index: &BlindIndex<u64>) -> Option<bool> {
    let log = crate::ids::ImportId::from_bytes([0; 16]);
    let mut landed = Vec::new();
    for n in 0..5 {
        landed.push(left.get(&(log, n)).unwrap() == Some(100));
    }
    for n in 5..10 {
        landed.push(right.get(&(log, n)).unwrap().is_none());
    }
    landed.push(index.get("taken").unwrap() == Some(1));
    for n in 5..10 {
        assert_eq!(
            left.get(&(log, n)).unwrap(),
            Some(n),
            "a record outside the set changed"
        );
    }
    if landed.iter().all(|&done| done) {
        Some(true)
    } else if landed.iter().all(|&done| !done) {
        Some(false)
    } else {
        None
    }
}

fn redo_journal_len(store: &Store) -> usize {
    store.shared.db.open_tree(redo::REDO_TREE).unwrap().len()
}

#[test]
fn a_redo_commit_lands_whole_leaves_no_journal_and_refuses_a_taken_claim() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let (left, right, index, writes) = redo_fixture(&store);
    store.commit_redo(writes).unwrap();
    assert_eq!(redo_landed(&left, &right, &index), Some(true));
    assert_eq!(redo_journal_len(&store), 0);

    let mut again = WriteSet::default();
    again
        .put(&left, &(crate::ids::ImportId::from_bytes([0; 16]), 7), &700)
        .unwrap();
    again.claim(&index, "taken", &2).unwrap();
    assert!(matches!(
        store.commit_redo(again),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        left.get(&(crate::ids::ImportId::from_bytes([0; 16]), 7))
            .unwrap(),
        Some(7),
        "a refused redo commit wrote something"
    );
    assert_eq!(index.get("taken").unwrap(), Some(1));
}

#[test]
fn a_redo_commit_cut_off_part_way_is_completed_when_the_store_opens_again() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = new_store(dir.path());
        let (left, right, index, writes) = redo_fixture(&store);
        store.commit_redo_cut_off(&writes, 3).unwrap();
        assert_eq!(
            redo_landed(&left, &right, &index),
            None,
            "the cut-off commit should be half in before the reopen"
        );
        assert_eq!(redo_journal_len(&store), 1);
    }
    let store = Store::open(
        &settings(dir.path()),
        MasterKey::load(&dir.path().join("master.key")).unwrap(),
        OpenMode::ExistingOnly,
    )
    .unwrap();
    let left: Counters = store.collection(Scope::Appliance, "left").unwrap();
    let right: Counters = store.collection(Scope::Appliance, "right").unwrap();
    let index = store.blind_index::<u64>(Scope::Appliance, "names").unwrap();
    assert_eq!(redo_landed(&left, &right, &index), Some(true));
    assert_eq!(redo_journal_len(&store), 0);
}

#[test]
fn a_heartbeat_writes_the_time_and_the_store_still_opens_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    {
        let store = new_store(dir.path());
        store.heartbeat().unwrap();
        store.heartbeat().unwrap();
    }
    let store = Store::open(
        &settings(dir.path()),
        MasterKey::load(&dir.path().join("master.key")).unwrap(),
        OpenMode::ExistingOnly,
    )
    .unwrap();
    let stored = store
        .shared
        .db
        .open_tree(META_TREE)
        .unwrap()
        .get(META_HEARTBEAT)
        .unwrap()
        .expect("a heartbeat");
    let seconds = u64::from_be_bytes(stored.as_ref().try_into().unwrap());
    assert!(
        seconds >= before && seconds <= before + 60,
        "{seconds} vs {before}"
    );
}
