//! Reading the audit log online: filters, paging, the download, the
//! broker's own check of the chain, and who may do any of it.

use futures_util::TryStreamExt;
use jitgate_shared::v1::api::{Decision, ReviewBody, Role};
use jitgate_shared::v1::ResourceId;

use super::audit::AuditQuery;
use super::*;
use crate::audit::query::AuditFilter;
use crate::audit::{AuditRecord, ChainVerifier};
use crate::testing::{body, harness, Harness};

fn auditor(h: &Harness) -> User {
    let mut u = h.users[2].clone();
    u.roles = [Role::Auditor].into();
    u
}

async fn read(h: &Harness, filter: AuditFilter) -> Vec<AuditRecord> {
    let q = AuditQuery {
        filter,
        limit: super::audit::MAX_AUDIT_PAGE,
        ..AuditQuery::default()
    };
    let page = h.broker.audit_log(&auditor(h), &q).await.unwrap();
    assert!(page.next_before.is_none(), "all on one page");
    page.records
}

fn kinds(records: &[AuditRecord]) -> Vec<&'static str> {
    records.iter().rev().map(|r| r.event.kind()).collect()
}

/// Ann asks for prod, Ben and Cat approve, the grant starts; Ben asks
/// for it too.
async fn some_history(h: &Harness) {
    let (ann, ben) = (&h.users[0], &h.users[1]);
    let r = h.broker.create_request(ann, body("prod", 600)).await.unwrap();
    for approver in [ben, &h.users[2]] {
        h.broker
            .review_request(approver, r.id, Decision::Approve, ReviewBody { comment: None })
            .await
            .unwrap();
    }
    h.broker.create_request(ben, body("prod", 600)).await.unwrap();
}

#[tokio::test]
async fn a_person_sees_what_they_did_and_what_happened_to_their_requests() {
    let h = harness().await;
    some_history(&h).await;
    let ann = read(
        &h,
        AuditFilter {
            person: Some(h.users[0].id.clone()),
            ..AuditFilter::default()
        },
    )
    .await;
    let ann_kinds = kinds(&ann);
    for kind in [
        "request_created",
        "request_reviewed",
        "request_approved",
        "grant_scheduled",
        "grant_activated",
    ] {
        assert!(ann_kinds.contains(&kind), "{kind} missing from {ann_kinds:?}");
    }
    assert_eq!(
        ann_kinds.iter().filter(|k| **k == "request_created").count(),
        1,
        "Ben's own request is not Ann's: {ann_kinds:?}"
    );
    // Newest first.
    assert!(ann.windows(2).all(|w| w[0].seq > w[1].seq));

    let ben = read(
        &h,
        AuditFilter {
            person: Some(h.users[1].id.clone()),
            kind: Some("request_reviewed"),
            ..AuditFilter::default()
        },
    )
    .await;
    assert_eq!(kinds(&ben), ["request_reviewed"], "his review of Ann's request");

    let prod = read(
        &h,
        AuditFilter {
            resource: Some(ResourceId::new("prod").unwrap()),
            kind: Some("request_created"),
            ..AuditFilter::default()
        },
    )
    .await;
    assert_eq!(prod.len(), 2);
    let nothing = read(
        &h,
        AuditFilter {
            resource: Some(ResourceId::new("dev").unwrap()),
            ..AuditFilter::default()
        },
    )
    .await;
    assert!(
        nothing.iter().all(|r| r.event.kind() == "resource_saved"),
        "{:?}",
        kinds(&nothing)
    );
}

#[tokio::test]
async fn pages_follow_on_without_gaps_and_time_bounds_hold() {
    let h = harness().await;
    let start = h.clock.now();
    some_history(&h).await;
    h.clock.advance(chrono::TimeDelta::hours(1));
    let later = h.clock.now();
    some_history(&h).await;
    let everything = read(&h, AuditFilter::default()).await;
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let q = AuditQuery {
            before,
            limit: 3,
            ..AuditQuery::default()
        };
        let page = h.broker.audit_log(&auditor(&h), &q).await.unwrap();
        assert!(page.records.len() <= 3);
        paged.extend(page.records);
        match page.next_before {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    assert_eq!(paged, everything, "pages join into the whole log");

    let recent = read(
        &h,
        AuditFilter {
            since: Some(later),
            ..AuditFilter::default()
        },
    )
    .await;
    assert!(!recent.is_empty() && recent.iter().all(|r| r.at >= later));
    let early = read(
        &h,
        AuditFilter {
            since: Some(start),
            until: Some(later),
            ..AuditFilter::default()
        },
    )
    .await;
    assert!(!early.is_empty() && early.iter().all(|r| r.at >= start && r.at < later));
    assert_eq!(
        recent.len() + early.len(),
        everything.iter().filter(|r| r.at >= start).count()
    );
}

#[tokio::test]
async fn only_admins_and_auditors_read_or_download_the_log() {
    let h = harness().await;
    let ann = &h.users[0];
    assert!(matches!(
        h.broker.audit_log(ann, &AuditQuery::default()).await,
        Err(ServiceError::Forbidden(_))
    ));
    assert!(matches!(
        h.broker.audit_export(ann, AuditFilter::default()).await,
        Err(ServiceError::Forbidden(_))
    ));
    assert!(h.broker.audit_chain_status(ann).is_err());
    assert!(h.broker.request_audit_check(ann).is_err());
    // A person with no account is named.
    let e = h
        .broker
        .audit_log(
            &auditor(&h),
            &AuditQuery {
                filter: AuditFilter {
                    person: Some("nobody".parse().unwrap()),
                    ..AuditFilter::default()
                },
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no account `nobody`"), "{e}");
}

#[tokio::test]
async fn the_download_unfiltered_is_the_whole_verifiable_chain() {
    let h = harness().await;
    some_history(&h).await;
    let lines = |filter| async {
        let bytes: Vec<bytes::Bytes> = h
            .broker
            .audit_export(&auditor(&h), filter)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let text = String::from_utf8(bytes.concat()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str::<AuditRecord>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let all = lines(AuditFilter::default()).await;
    let mut verifier = ChainVerifier::default();
    for r in &all {
        verifier.check(r).unwrap();
    }
    assert_eq!(
        verifier.verified(),
        h.broker.store.audit_head().await.unwrap().seq
    );
    let created = lines(AuditFilter {
        kind: Some("request_created"),
        ..AuditFilter::default()
    })
    .await;
    assert_eq!(created.len(), 2);
    assert!(created[0].seq < created[1].seq, "oldest first, as `audit export`");
}

#[tokio::test]
async fn the_broker_checks_its_chain_and_its_signed_head() {
    let h = harness().await;
    some_history(&h).await;
    let a = auditor(&h);
    assert_eq!(h.broker.audit_chain_status(&a).unwrap(), Default::default());
    h.broker.anchor_audit().await.unwrap();
    h.broker.verify_audit_chain().await.unwrap();
    let status = h.broker.audit_chain_status(&a).unwrap();
    assert!(status.running.is_none());
    let (_, report) = status.last.unwrap();
    assert!(report.broken.is_none(), "{:?}", report.broken);
    let head = h.broker.store.audit_head().await.unwrap().seq;
    assert_eq!(report.records, head);
    assert_eq!(report.anchor.map(|x| x.seq), Some(head));
}

#[tokio::test]
async fn an_edited_record_shows_the_chain_broken_where_it_was_edited() {
    let dir = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn crate::store::Store> =
        std::sync::Arc::new(crate::store::sled::SledStore::open(dir.path()).unwrap());
    let mut records = crate::audit::tests::chain(5);
    records[2].actor = crate::audit::Actor::User("mallory".parse().unwrap());
    store
        .load(
            records
                .into_iter()
                .map(crate::store::dump::Entry::Audit)
                .collect(),
        )
        .await
        .unwrap();
    let clock = std::sync::Arc::new(crate::clock::ManualClock::new(crate::testing::t0()));
    crate::quickstart::Seed::parse(crate::testing::CATALOG, "test")
        .unwrap()
        .apply(&Broker::without_policies(store.clone(), clock.clone()))
        .await
        .unwrap();
    let broker = crate::testing::start(store, clock).await;
    broker.verify_audit_chain().await.unwrap();
    let mut admin = harness().await.users[0].clone();
    admin.roles = [Role::Admin].into();
    let (_, report) = broker.audit_chain_status(&admin).unwrap().last.unwrap();
    assert_eq!(report.records, 2);
    assert_eq!(
        report.broken.map(|b| b.to_string()),
        Some("record 3: content does not match its hash (edited)".to_owned())
    );
    assert_eq!(broker.metrics.audit_chain_broken.get(), 1);
}
