//! Every string the console shows, in English and Japanese side by side:
//! a string missing in either language does not compile. The language is
//! the person's choice (kept with their account when signed in, else in a
//! cookie, both set from the page footer), else the browser's
//! `Accept-Language`, else English.

use jitgate_shared::v1::api::{EndReason, RequestState};

/// A language the console speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    Ja,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Ja];

    /// The BCP 47 tag (`<html lang>`, the cookie).
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ja => "ja",
        }
    }

    /// The language's own name, for the chooser.
    pub fn name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Ja => "日本語",
        }
    }

    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::En => &EN,
            Lang::Ja => &JA,
        }
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        let primary = code.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        Lang::ALL.into_iter().find(|l| l.code() == primary)
    }

    /// The chosen language, else the first of `Accept-Language` (by
    /// quality) that the console speaks, else English.
    pub fn negotiate(chosen: Option<&str>, accept_language: Option<&str>) -> Lang {
        if let Some(lang) = chosen.and_then(Lang::from_code) {
            return lang;
        }
        let mut offers: Vec<(f32, Lang)> = accept_language
            .unwrap_or("")
            .split(',')
            .filter_map(|part| {
                let mut pieces = part.split(';');
                let lang = Lang::from_code(pieces.next()?)?;
                let q = pieces
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())?;
                (q > 0.0).then_some((q, lang))
            })
            .collect();
        // Stable: of equal quality, the first listed wins.
        offers.sort_by(|a, b| b.0.total_cmp(&a.0));
        offers.first().map_or(Lang::En, |(_, l)| *l)
    }

    /// A length of time, in whole minutes: "1 h 30 min", "1時間30分".
    pub fn duration(self, seconds: u64) -> String {
        let minutes = seconds.div_ceil(60);
        let (d, h, m) = (minutes / 1440, minutes % 1440 / 60, minutes % 60);
        let parts: [(u64, &str, &str); 3] = [(d, " d", "日"), (h, " h", "時間"), (m, " min", "分")];
        let shown: Vec<String> = parts
            .iter()
            .filter(|(n, _, _)| *n > 0)
            .map(|(n, en, ja)| match self {
                Lang::En => format!("{n}{en}"),
                Lang::Ja => format!("{n}{ja}"),
            })
            .collect();
        if shown.is_empty() {
            return match self {
                Lang::En => "0 min".into(),
                Lang::Ja => "0分".into(),
            };
        }
        match self {
            Lang::En => shown.join(" "),
            Lang::Ja => shown.concat(),
        }
    }
}

macro_rules! texts {
    ($($name:ident: $en:literal / $ja:literal,)*) => {
        /// The console's strings in one language.
        #[derive(Debug)]
        pub struct Texts {
            $(pub $name: &'static str,)*
        }

        pub static EN: Texts = Texts { $($name: $en,)* };
        pub static JA: Texts = Texts { $($name: $ja,)* };

        /// Every string of `t`, by name (for checks that a page speaks
        /// one language).
        pub fn entries(t: &Texts) -> Vec<(&'static str, &'static str)> {
            vec![$((stringify!($name), t.$name),)*]
        }
    };
}

texts! {
    skip_to_content: "Skip to content" / "本文へ移動",
    nav_label: "Main" / "メイン",
    nav_home: "My access" / "マイアクセス",
    nav_catalogue: "Request access" / "アクセスを申請",
    nav_inbox: "Approvals" / "承認",
    nav_agents: "Agents" / "エージェント",
    nav_users: "Users" / "ユーザー",
    nav_audit: "Audit log" / "監査ログ",
    signed_in_as: "Signed in as" / "サインイン中:",
    sign_out: "Sign out" / "サインアウト",
    language: "Language" / "言語",
    choose: "Change" / "変更",
    live_updated: "Page updated" / "ページを更新しました",

    sign_in_title: "Sign in to jitgate" / "jitgate にサインイン",
    sign_in_with: "Sign in with" / "次の方法でサインイン:",
    sign_in_no_providers: "No identity provider is configured here." / "ここではIDプロバイダーが設定されていません。",
    sign_in_link_hint: "Local accounts sign in with a one-time link an admin makes (jitgate-broker user link USER)." / "ローカルアカウントは、管理者が発行するワンタイムリンク(jitgate-broker user link USER)でサインインします。",
    link_title: "Sign in with a link" / "リンクでサインイン",
    link_continue_as: "This link signs you in as" / "このリンクで次のユーザーとしてサインインします:",
    link_once: "It works once." / "リンクは一度だけ使えます。",
    link_button: "Sign in" / "サインイン",
    link_invalid: "This sign-in link is unknown, expired or already used. Ask an admin for a new one." / "このサインインリンクは無効、期限切れ、または使用済みです。管理者に新しいリンクを依頼してください。",

    home_title: "My access" / "マイアクセス",
    active_grants: "Access I hold" / "保有中のアクセス",
    no_active_grants: "You hold no access right now." / "現在保有しているアクセスはありません。",
    pending_requests: "Waiting for approval" / "承認待ちの申請",
    no_pending_requests: "None of your requests is waiting." / "承認待ちの申請はありません。",
    recent_requests: "Recent requests" / "最近の申請",
    no_recent_requests: "No earlier request." / "以前の申請はありません。",
    col_resource: "Resource" / "リソース",
    col_time_left: "Time left" / "残り時間",
    col_state: "State" / "状態",
    col_requested: "Requested" / "申請日時",
    col_duration: "Duration" / "期間",
    col_approvals: "Approvals" / "承認数",
    col_actions: "Actions" / "操作",
    col_decision: "My decision" / "自分の判断",
    end_now: "End now" / "今すぐ終了",
    end_confirm: "End this access now?" / "このアクセスを今すぐ終了しますか?",
    extend: "Extend" / "延長",
    extend_by: "Extend by" / "延長する時間",
    cancel_request: "Cancel request" / "申請を取り消す",
    cancel_confirm: "Cancel this request?" / "この申請を取り消しますか?",
    details: "Details" / "詳細",
    grant_applying: "being applied" / "適用中",
    grant_applied: "applied" / "適用済み",
    grant_effective: "in effect" / "有効",
    grant_scheduled: "scheduled" / "開始待ち",
    revoke_failing: "revoke failing, retried" / "取り消し失敗(再試行中)",
    starts: "Starts" / "開始",

    state_pending: "pending" / "承認待ち",
    state_approved: "approved" / "承認済み",
    state_active: "active" / "有効",
    state_ended: "ended" / "終了",
    state_denied: "denied" / "却下",
    state_pending_expired: "expired unapproved" / "承認期限切れ",
    state_cancelled: "cancelled" / "取り消し済み",
    end_expired: "window closed" / "期間満了",
    end_revoked: "ended early" / "早期終了",
    end_cancelled: "cancelled" / "取り消し",
    end_deprovisioned: "account deprovisioned" / "アカウント停止",

    catalogue_title: "Request access" / "アクセスを申請",
    search_label: "Search resources" / "リソースを検索",
    search_button: "Search" / "検索",
    catalogue_empty: "No resource you may request matches." / "申請できるリソースは見つかりません。",
    approvals_needed: "Approvals needed" / "必要な承認数",
    granted_at_once: "none, granted at once" / "不要(即時付与)",
    approvers: "Who can approve" / "承認できる人",
    nobody: "nobody yet" / "まだいません",
    default_duration: "Default duration" / "既定の期間",
    max_duration: "Longest" / "最長",
    ticket_needed: "Ticket" / "チケット",
    not_needed: "not needed" / "不要",
    break_glass_allowed: "Break-glass allowed for you" / "緊急アクセス可",
    request_button: "Request" / "申請する",

    new_request_title: "Request access" / "アクセスを申請",
    duration: "Duration" / "期間",
    justification: "Justification" / "理由",
    required: "required" / "必須",
    optional: "optional" / "任意",
    ticket: "Ticket" / "チケット",
    ticket_must_match: "Must match the pattern" / "次のパターンに一致する必要があります:",
    ticket_mismatch: "This ticket does not match the pattern." / "チケットがパターンに一致しません。",
    starts_at: "Start at (UTC)" / "開始日時(UTC)",
    starts_at_hint: "Leave empty to start as soon as approved." / "空欄なら承認後すぐに開始します。",
    break_glass: "Break glass: start without approval" / "緊急アクセス:承認なしで開始",
    break_glass_warning: "Break-glass access starts at once without approval. It is audited, flagged for review afterwards, and security is told." / "緊急アクセスは承認なしで直ちに開始されます。監査され、事後レビューの対象となり、セキュリティ担当に通知されます。",
    submit_request: "Submit request" / "申請を送信",
    not_accepted: "The request was not accepted" / "申請は受け付けられませんでした",

    request_title: "Request" / "申請",
    requester: "Requester" / "申請者",
    principal: "Granted to" / "付与先",
    window: "Window" / "期間",
    timeline: "Timeline" / "経過",
    ev_created: "Requested" / "申請",
    ev_approved_by: "Approved by" / "承認:",
    ev_denied_by: "Denied by" / "却下:",
    ev_granted: "Access granted" / "アクセスを付与",
    ev_applied: "Applied in the tenant" / "テナントに適用",
    ev_effective: "Confirmed in effect where it is used" / "利用先で有効を確認",
    ev_ends: "Ends" / "終了予定",
    ev_ended: "Ended" / "終了",
    ev_removed: "Removed from the tenant" / "テナントから削除",
    ev_removal_confirmed: "Removal confirmed where it was used" / "利用先で削除を確認",
    ev_delivery_error: "Delivery error" / "配信エラー",
    ev_closed: "Closed" / "終了",
    chain: "Federated chain" / "フェデレーション経路",
    comment: "Comment" / "コメント",
    break_glass_flag: "break-glass" / "緊急アクセス",
    extension_flag: "extension of a running grant" / "実行中の付与の延長",

    mail_open: "Open the request in jitgate" / "jitgate で申請を開く",
    slack_deny_title: "Deny the request" / "申請を却下",
    slack_cancel: "Cancel" / "キャンセル",
    mail_detail: "Detail" / "詳細",
    mail_open_agents: "Open the agents page in jitgate" / "jitgate でエージェントのページを開く",
    last_contact: "Last connected" / "最終接続",
    agents_waiting: "Its grants and revokes wait until an agent reconnects." / "エージェントが再接続するまで、付与と取り消しは待機します。",
    mail_footer: "You get this mail because a jitgate workflow sends these events to you. Requests are approved on their page in jitgate, never by a link in a mail." / "jitgate のワークフローがこのイベントをあなたに送る設定のため、このメールが届きました。申請の承認は jitgate の申請ページで行います。メール内のリンクで承認されることはありません。",

    inbox_title: "Approvals" / "承認",
    inbox_empty: "Nothing waits for your review." / "レビュー待ちの申請はありません。",
    approve: "Approve" / "承認する",
    deny: "Deny" / "却下する",
    deny_confirm: "Deny this request?" / "この申請を却下しますか?",
    you_reviewed: "You have reviewed this request." / "この申請はレビュー済みです。",
    allowed_by: "You may approve under" / "承認の根拠となるポリシー",
    history: "Their earlier requests for it" / "このリソースへの過去の申請",
    none: "none" / "なし",
    my_decisions: "My recent decisions" / "最近の判断",
    no_decisions: "You have not reviewed any request yet." / "まだ判断した申請はありません。",
    expires_pending: "Approve before" / "承認期限",

    agents_title: "Agents" / "エージェント",
    no_agents: "No agent has enrolled yet." / "登録済みのエージェントはありません。",
    col_agent: "Agent" / "エージェント",
    col_configuration: "Configuration" / "構成",
    col_online: "Connection" / "接続",
    col_last_seen: "Last seen" / "最終応答",
    col_certificate: "Certificate expires" / "証明書の有効期限",
    col_drift: "Drift" / "ドリフト",
    online: "online" / "オンライン",
    offline: "offline" / "オフライン",
    agent_pending: "waiting for approval" / "承認待ち",
    agent_active: "active" / "稼働中",
    agent_revoked: "revoked" / "失効",
    drift_unknown: "not checked yet" / "未確認",
    drift_none: "none" / "なし",
    drift_unexpected: "unexpected" / "件の想定外",
    drift_missing: "missing" / "件の欠落",
    approve_agent: "Approve" / "承認する",
    revoke_agent: "Revoke" / "失効させる",
    revoke_agent_confirm: "Revoke this agent? It can no longer connect." / "このエージェントを失効させますか?以後接続できなくなります。",
    enroll_title: "Enroll an agent" / "エージェントを登録",
    enroll_hint: "Make a join token for a configuration, then run the command on the agent's host within an hour." / "構成の参加トークンを発行し、1時間以内にエージェントのホストでコマンドを実行してください。",
    make_join_token: "Make a join token" / "参加トークンを発行",
    enroll_command: "Run this on the agent's host (the token is shown once)" / "エージェントのホストで実行してください(トークンは一度だけ表示されます)",
    expires: "Expires" / "有効期限",

    delivery_title: "Delivery" / "配信状況",
    col_queued: "Queued commands" / "待機中のコマンド",
    col_revokes: "of which revokes" / "うち取り消し",
    col_oldest: "Oldest" / "最古",
    failing_title: "Revokes that keep failing" / "失敗が続く取り消し",
    notifications_title: "Notification delivery" / "通知の配信",
    no_notifications: "No notification has been sent yet (channels are set in [notify], routes in workflows.toml)." / "まだ通知は送信されていません(チャネルは [notify]、送信先は workflows.toml で設定します)。",
    col_address: "Address" / "宛先",
    col_waiting: "Waiting" / "待機中",
    col_failing: "Failing" / "失敗中",
    col_delivered: "Delivered" / "配信済み",
    col_given_up: "Given up" / "断念",
    col_last_delivered: "Last delivered" / "最終配信",
    col_last_error: "Last error" / "最後のエラー",
    no_failing: "No revoke is failing." / "失敗中の取り消しはありません。",
    col_since: "Failing since" / "失敗開始",
    col_attempts: "Attempts" / "試行回数",
    col_reason: "Last answer" / "最後の応答",
    force_close_reason: "How it was removed by hand" / "手作業での削除方法",
    force_close: "Close as removed" / "削除済みとして閉じる",
    force_close_confirm: "Close this revoke? Only if the entitlement is gone from the tenant." / "この取り消しを閉じますか?テナントから権限が削除済みの場合のみ実行してください。",
    configurations_title: "Configurations" / "構成",
    col_kind_of: "Kind" / "種別",
    col_identities: "Identities" / "ID連携",
    col_grants: "Grants" / "付与内容",
    disabled_configuration: "disabled" / "無効",
    explain_title: "How would it be elevated?" / "どのように権限が付与されるか",
    explain_hint: "Choose a resource and a person: the chain and the entitlements, without acting." / "リソースと人を選ぶと、実行せずに経路と付与内容を表示します。",
    explain_button: "Explain" / "説明を表示",
    applied_in: "Applied in" / "適用先",
    confirmed_in: "Confirmed where it is used" / "利用先での確認",
    col_principal: "As" / "対象",
    col_agents: "Agents" / "エージェント",
    no_agent_yet: "none active: commands wait in the outbox" / "稼働中なし(コマンドは待機)",
    users_title: "Users" / "ユーザー",
    col_user: "User" / "ユーザー",
    col_email: "Email" / "メールアドレス",
    col_roles: "Roles" / "ロール",
    col_groups: "Groups" / "グループ",
    col_linked: "Same person as" / "同一人物のアカウント",
    col_sign_in: "Signs in through" / "サインイン方法",
    col_created: "Created" / "作成日時",
    account_disabled: "disabled" / "無効",
    disable_user: "Disable" / "無効にする",
    disable_user_confirm: "Disable this account? Its grants end, its sessions and tokens stop working." / "このアカウントを無効にしますか?付与は終了し、セッションとトークンは使えなくなります。",
    sessions_title: "Live sessions" / "有効なセッション",
    no_sessions: "Nobody is signed in." / "サインイン中のユーザーはいません。",
    col_provider: "Provider" / "プロバイダー",
    end_session: "End session" / "セッションを終了",
    tokens_title: "API tokens" / "APIトークン",
    no_tokens: "No API token is valid." / "有効なAPIトークンはありません。",
    col_kind: "Kind" / "種類",
    revoke_token: "Revoke" / "失効させる",

    audit_hint: "Every record, newest first. Times are UTC." / "すべての記録を新しい順に表示します。時刻はUTCです。",
    audit_person: "Person" / "人物",
    audit_person_hint: "any of their accounts; what they did and what was done to them" / "リンクされた全アカウント。本人の操作と本人への操作",
    audit_kind: "Record kind" / "記録の種類",
    audit_any_kind: "Any kind" / "すべての種類",
    audit_since: "From (UTC)" / "開始(UTC)",
    audit_until: "Before (UTC)" / "終了(UTC)",
    audit_filter: "Filter" / "絞り込む",
    audit_clear: "Clear" / "解除",
    audit_download: "Download these records (JSON lines)" / "この記録をダウンロード(JSON Lines)",
    audit_download_hint: "Unfiltered, the download is the whole chain: check it with jitgate-broker audit verify --input FILE." / "絞り込みなしのダウンロードはチェーン全体です。jitgate-broker audit verify --input FILE で検証できます。",
    audit_none: "No record matches." / "該当する記録はありません。",
    audit_older: "Older records" / "さらに古い記録",
    audit_newest: "Newest records" / "最新の記録",
    audit_searched: "Searched back to record" / "検索した最古の記録:",
    col_seq: "No." / "番号",
    col_when: "When" / "日時",
    col_actor: "Who" / "実行者",
    col_about: "About" / "対象",
    audit_system: "jitgate (system)" / "jitgate(システム)",
    audit_directory: "Directory" / "ディレクトリ",
    audit_details: "Details" / "詳細",
    about_request: "Request" / "申請",
    about_grant: "Grant" / "付与",
    about_agent: "Agent" / "エージェント",
    chain_title: "Chain check" / "チェーン検証",
    chain_intact: "Intact" / "改ざんなし",
    chain_broken: "BROKEN" / "破損",
    chain_records_verified: "records verified" / "件の記録を検証",
    chain_checked_at: "checked" / "検証日時:",
    chain_signed_head: "signed head matches at record" / "署名済みの先頭と一致。記録番号:",
    chain_not_signed: "no signed head yet" / "署名済みの先頭はまだありません",
    chain_running: "Checking" / "検証中",
    chain_of: "of" / "件 / 全",
    chain_not_checked: "Not checked yet since the broker started." / "ブローカー起動後、まだ検証していません。",
    chain_verify_now: "Check now" / "今すぐ検証",

    error_title: "That did not work" / "操作できませんでした",
    back: "Back" / "戻る",
    csrf_refused: "This form is out of date or was not sent from this console. Reload the page and try again." / "このフォームは古いか、このコンソールから送信されたものではありません。ページを再読み込みしてやり直してください。",
    not_found: "Nothing here, or nothing you may see." / "見つからないか、閲覧する権限がありません。",
}

/// Each audit record kind's name for people: (kind, English, Japanese).
/// A test checks every kind of [`AuditEvent::KINDS`] is here.
///
/// [`AuditEvent::KINDS`]: crate::audit::AuditEvent::KINDS
const AUDIT_KINDS: &[(&str, &str, &str)] = &[
    ("request_created", "Request made", "申請作成"),
    ("request_reviewed", "Request reviewed", "申請の審査"),
    ("request_approved", "Request approved", "申請承認"),
    ("request_denied", "Request denied", "申請却下"),
    ("request_cancelled", "Request cancelled", "申請取り消し"),
    (
        "request_pending_expired",
        "Request expired unreviewed",
        "未審査のまま申請期限切れ",
    ),
    ("break_glass_used", "Break-glass used", "緊急アクセス使用"),
    ("grant_scheduled", "Grant scheduled", "付与予定"),
    ("grant_activated", "Grant started", "付与開始"),
    ("grant_extended", "Grant extended", "付与延長"),
    ("grant_ended", "Grant ended", "付与終了"),
    ("configuration_saved", "Configuration saved", "構成保存"),
    ("resource_saved", "Resource saved", "リソース保存"),
    ("user_saved", "User saved", "ユーザー保存"),
    (
        "user_provisioned",
        "User provisioned (SCIM)",
        "ユーザー作成(SCIM)",
    ),
    (
        "user_deprovisioned",
        "User deprovisioned",
        "ユーザーのアクセス停止",
    ),
    ("user_reactivated", "User reactivated", "ユーザー再有効化"),
    (
        "scim_connection_created",
        "SCIM connection created",
        "SCIM接続作成",
    ),
    ("signed_in", "Signed in", "サインイン"),
    ("sign_in_link_issued", "Sign-in link made", "サインインリンク発行"),
    ("sign_in_refused", "Sign-in refused", "サインイン拒否"),
    ("session_ended", "Session ended", "セッション終了"),
    (
        "scim_connection_deleted",
        "SCIM connection deleted",
        "SCIM接続削除",
    ),
    ("token_issued", "API token issued", "APIトークン発行"),
    ("token_revoked", "API token revoked", "APIトークン失効"),
    ("join_token_created", "Join token made", "参加トークン発行"),
    ("agent_enrolled", "Agent enrolled", "エージェント登録"),
    ("agent_revoked", "Agent revoked", "エージェント失効"),
    ("agent_approved", "Agent approved", "エージェント承認"),
    (
        "agent_certificate_renewed",
        "Agent certificate renewed",
        "エージェント証明書更新",
    ),
    ("command_settled", "Command answered", "コマンド応答"),
    ("revoke_failed", "Revoke failed", "取り消し失敗"),
    ("revoke_superseded", "Revoke superseded", "取り消しの置き換え"),
    (
        "revoke_force_closed",
        "Revoke closed by hand",
        "取り消しの手動完了",
    ),
    ("grant_effective", "In effect where used", "利用先で付与有効"),
    (
        "grant_removal_confirmed",
        "Removal confirmed where used",
        "利用先で削除確認",
    ),
    (
        "agent_self_revoked",
        "Agent removed it on its own",
        "エージェントによる自動取り消し",
    ),
    ("drift_found", "Drift found", "差分検出"),
    ("policies_loaded", "Policies loaded", "ポリシー読み込み"),
    ("policies_rejected", "Policies rejected", "ポリシー拒否"),
    (
        "chat_action_refused",
        "Chat action refused",
        "チャットからの操作を拒否",
    ),
];

/// Every notification event kind's name as people read it: kind, English,
/// Japanese.
const EVENT_KINDS: &[(&str, &str, &str)] = &[
    ("request_created", "New access request", "新しいアクセス申請"),
    ("request_reviewed", "Request reviewed", "申請がレビューされました"),
    ("request_approved", "Request approved", "申請が承認されました"),
    ("request_denied", "Request denied", "申請が却下されました"),
    (
        "request_expired",
        "Request expired undecided",
        "申請が期限切れになりました",
    ),
    ("request_cancelled", "Request cancelled", "申請が取り消されました"),
    (
        "break_glass_used",
        "BREAK-GLASS access taken",
        "緊急アクセスが使用されました",
    ),
    ("grant_active", "Access started", "アクセス開始"),
    ("grant_applied", "Access applied", "アクセスが適用されました"),
    (
        "grant_in_effect",
        "Access in effect where used",
        "利用先でアクセスが有効になりました",
    ),
    ("grant_extended", "Access extended", "アクセスが延長されました"),
    (
        "grant_ending_soon",
        "Access ends soon",
        "アクセスがまもなく終了します",
    ),
    ("grant_ended", "Access ended", "アクセス終了"),
    ("revoke_failing", "REVOKE FAILING", "取り消しに失敗しています"),
    ("agent_offline", "AGENTS OFFLINE", "エージェントがオフラインです"),
];

impl Lang {
    /// A notification event kind as people read it.
    pub fn event_kind(self, kind: crate::notify::event::EventKind) -> &'static str {
        let name = kind.name();
        EVENT_KINDS
            .iter()
            .find(|(k, _, _)| *k == name)
            .map_or(name, |(_, en, ja)| match self {
                Lang::En => en,
                Lang::Ja => ja,
            })
    }

    /// An audit record kind as people read it (the kind itself if it has
    /// no name, which a test rules out).
    pub fn audit_kind(self, kind: &'static str) -> &'static str {
        AUDIT_KINDS
            .iter()
            .find(|(k, _, _)| *k == kind)
            .map_or(kind, |(_, en, ja)| match self {
                Lang::En => en,
                Lang::Ja => ja,
            })
    }
}

impl Texts {
    pub fn request_state(&self, state: &RequestState) -> &'static str {
        match state {
            RequestState::Pending => self.state_pending,
            RequestState::Approved => self.state_approved,
            RequestState::Active => self.state_active,
            RequestState::Ended => self.state_ended,
            RequestState::Denied => self.state_denied,
            RequestState::PendingExpired => self.state_pending_expired,
            RequestState::Cancelled => self.state_cancelled,
        }
    }

    pub fn end_reason(&self, reason: &EndReason) -> &'static str {
        match reason {
            EndReason::Expired => self.end_expired,
            EndReason::Revoked => self.end_revoked,
            EndReason::Cancelled => self.end_cancelled,
            EndReason::Deprovisioned => self.end_deprovisioned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_string_is_translated() {
        let (en, ja) = (entries(&EN), entries(&JA));
        assert_eq!(en.len(), ja.len());
        for ((name, e), (_, j)) in en.iter().zip(&ja) {
            assert!(!e.trim().is_empty() && !j.trim().is_empty(), "{name} is empty");
            // A Japanese string that is the English one was not translated
            // (names and commands inside a sentence are fine).
            assert_ne!(e, j, "{name} is not translated");
            assert!(!j.is_ascii(), "{name}: the Japanese text is all ASCII: {j}");
        }
    }

    #[test]
    fn every_event_kind_has_a_name_in_each_language() {
        use strum::VariantArray;
        for kind in crate::notify::event::EventKind::VARIANTS {
            assert!(EVENT_KINDS.iter().any(|(k, _, _)| *k == kind.name()), "{kind}");
            assert_ne!(Lang::Ja.event_kind(*kind), Lang::En.event_kind(*kind));
        }
        assert_eq!(EVENT_KINDS.len(), crate::notify::event::EventKind::VARIANTS.len());
    }

    #[test]
    fn every_audit_record_kind_has_a_name_in_each_language() {
        let kinds = crate::audit::AuditEvent::KINDS;
        for kind in kinds {
            for lang in Lang::ALL {
                assert_ne!(
                    lang.audit_kind(kind),
                    *kind,
                    "{kind} has no name in {}",
                    lang.code()
                );
            }
            assert!(!Lang::Ja.audit_kind(kind).is_ascii(), "{kind} is not translated");
        }
        for (kind, _, _) in AUDIT_KINDS {
            assert!(kinds.contains(kind), "{kind} is not a record kind");
        }
    }

    #[test]
    fn the_language_is_the_choice_then_the_browser_then_english() {
        assert_eq!(Lang::negotiate(Some("ja"), Some("en")), Lang::Ja);
        assert_eq!(Lang::negotiate(None, Some("ja-JP,ja;q=0.9,en;q=0.8")), Lang::Ja);
        assert_eq!(Lang::negotiate(None, Some("fr-FR, en;q=0.5, ja;q=0.7")), Lang::Ja);
        assert_eq!(Lang::negotiate(None, Some("de, fr")), Lang::En);
        assert_eq!(Lang::negotiate(None, Some("ja;q=0")), Lang::En);
        assert_eq!(Lang::negotiate(Some("xx"), None), Lang::En);
        assert_eq!(Lang::negotiate(None, Some(";;,q=,ja;q=abc")), Lang::En);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(Lang::En.duration(90 * 60), "1 h 30 min");
        assert_eq!(Lang::Ja.duration(90 * 60), "1時間30分");
        assert_eq!(Lang::En.duration(3600), "1 h");
        assert_eq!(Lang::En.duration(26 * 3600), "1 d 2 h");
        assert_eq!(Lang::En.duration(0), "0 min");
        assert_eq!(Lang::En.duration(59), "1 min");
    }
}
