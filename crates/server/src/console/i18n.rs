//! The console's strings: one table, Chinese (zh-CN, the default) and English side by side, so
//! neither language can miss a string. Keys are stable identifiers; a missing key shows itself.

/// The console's languages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    pub fn parse(text: &str) -> Option<Lang> {
        match text {
            "zh" | "zh-CN" | "zh-cn" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The cookie and query value.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// The `lang` attribute of the page.
    pub fn html(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }
}

/// (key, zh-CN, en).
const STRINGS: &[(&str, &str, &str)] = &[
    ("app", "算力券平台", "Suanli compute vouchers"),
    (
        "footer",
        "金额单位：人民币元（精确到分）· 时间：北京时间（Asia/Shanghai）",
        "Amounts in CNY, exact to the fen · Times in Asia/Shanghai",
    ),
    ("nav.enterprise", "企业额度", "Enterprise"),
    ("nav.provider", "服务商", "Provider"),
    ("nav.finance", "财务", "Finance"),
    ("nav.audit", "审计", "Audit"),
    ("role.beneficiary", "企业", "Enterprise"),
    ("role.provider", "服务商", "Provider"),
    ("role.finance", "财务", "Finance"),
    ("role.auditor", "审计", "Auditor"),
    ("role.admin", "管理员", "Admin"),
    ("signout", "退出", "Sign out"),
    ("signin.title", "登录", "Sign in"),
    (
        "signin.intro",
        "请输入您的登录名和密码。",
        "Enter your login and password.",
    ),
    ("signin.login", "登录名", "Login"),
    ("signin.password", "密码", "Password"),
    (
        "signin.token_intro",
        "服务账号：使用 API 令牌登录（与命令行和 gRPC 接口使用的令牌相同）",
        "Service accounts: sign in with an API token (the token the CLI and the gRPC API use)",
    ),
    (
        "signin.wrong",
        "登录名或密码错误",
        "wrong login or password",
    ),
    ("signin.code", "一次性验证码", "One-time code"),
    (
        "signin.code_hint",
        "已绑定验证器的用户请填写验证器显示的 6 位数字",
        "if you enrolled an authenticator, the 6 digits it shows",
    ),
    (
        "signin.code_needed",
        "请填写验证器显示的 6 位一次性验证码",
        "enter the 6-digit one-time code your authenticator shows",
    ),
    (
        "signin.code_wrong",
        "验证码错误、已过期或已使用",
        "the one-time code is wrong, expired or already used",
    ),
    ("account.title", "我的账户", "My account"),
    (
        "account.totp",
        "验证器（两步验证）",
        "Authenticator (two-step sign-in)",
    ),
    (
        "account.totp_on",
        "已绑定验证器：登录时需要一次性验证码。",
        "An authenticator is enrolled: sign-in asks for a one-time code.",
    ),
    (
        "account.totp_intro",
        "用验证器应用（如 Google Authenticator、Microsoft Authenticator）扫描二维码，然后填写它显示的验证码。",
        "Scan the QR code with an authenticator app (Google Authenticator, Microsoft Authenticator, …), then enter the code it shows.",
    ),
    (
        "account.totp_manual",
        "无法扫描时手动输入密钥：",
        "Or enter this key by hand:",
    ),
    ("account.totp_confirm", "绑定", "Enrol"),
    (
        "account.totp_required",
        "您的角色要求两步验证：请先绑定验证器。",
        "Your role requires two-step sign-in: enrol an authenticator first.",
    ),
    (
        "account.totp_none",
        "未绑定验证器。",
        "No authenticator is enrolled.",
    ),
    (
        "account.totp_token",
        "使用 API 令牌登录的会话不能绑定验证器；请用登录名和密码登录。",
        "A session signed in with an API token cannot enrol an authenticator; sign in with your login and password.",
    ),
    (
        "account.totp_reload",
        "请重新打开账户页面再绑定",
        "reload the account page and enrol again",
    ),
    ("account.sessions", "我的会话", "My sessions"),
    ("account.client", "客户端地址", "Client address"),
    (
        "account.created_mins",
        "登录于（分钟前）",
        "Signed in (minutes ago)",
    ),
    (
        "account.seen_mins",
        "最近活动（分钟前）",
        "Last seen (minutes ago)",
    ),
    ("account.this_session", "当前会话", "this session"),
    ("account.revoke", "结束会话", "End session"),
    (
        "signin.locked",
        "登录失败次数过多，已暂时锁定，请稍后再试",
        "too many failed sign-ins; locked for a while, try again later",
    ),
    (
        "signin.disabled",
        "该用户已停用，请联系管理员",
        "this user is disabled; ask an administrator",
    ),
    (
        "signin.insecure",
        "密码登录需要 HTTPS：请为服务器配置 TLS 证书（tls.cert_path），或通过终止 TLS 的代理访问控制台（server.trust_proxy_tls）",
        "password sign-in needs HTTPS: give the server a TLS certificate (tls.cert_path) or reach the console through a TLS-terminating proxy (server.trust_proxy_tls)",
    ),
    (
        "signin.insecure_sso",
        "单点登录需要 HTTPS：请为服务器配置 TLS 证书（tls.cert_path），或通过终止 TLS 的代理访问控制台（server.trust_proxy_tls）",
        "single sign-on needs HTTPS: give the server a TLS certificate (tls.cert_path) or reach the console through a TLS-terminating proxy (server.trust_proxy_tls)",
    ),
    ("signin.sso", "使用单点登录（SSO）登录", "Sign in with SSO"),
    (
        "signin.sso_or_password",
        "或使用登录名和密码：",
        "or with your login and password:",
    ),
    (
        "sso.unreachable",
        "暂时无法连接身份提供方，请稍后再试",
        "the identity provider cannot be reached; try again later",
    ),
    (
        "sso.state",
        "单点登录已过期，或不是在此浏览器中发起的，请重新登录",
        "the single sign-on expired or was not started in this browser; sign in again",
    ),
    (
        "sso.provider",
        "身份提供方未完成登录",
        "the identity provider did not complete the sign-in",
    ),
    (
        "sso.no_claim",
        "身份提供方未提供可用于识别用户的信息",
        "the identity provider sent nothing that names a user",
    ),
    (
        "sso.unknown_user",
        "身份提供方已确认您的身份，但本平台没有与之对应的启用用户，请联系管理员",
        "the identity provider vouched for you, but no enabled user here matches; ask an administrator",
    ),
    ("sso.done", "已登录。", "Signed in."),
    ("sso.continue", "继续", "Continue"),
    (
        "account.totp_sso",
        "您通过单点登录（SSO）登录：第二步验证由身份提供方负责",
        "you signed in with SSO: your identity provider asks for the second factor",
    ),
    ("account.via", "登录方式", "Signed in with"),
    ("via.password", "密码", "password"),
    ("via.sso", "单点登录", "SSO"),
    ("via.token", "API 令牌", "API token"),
    ("signin.token", "API 令牌", "API token"),
    ("signin.submit", "登录", "Sign in"),
    (
        "signin.refused",
        "令牌无效、已撤销或已过期",
        "the token is unknown, revoked or expired",
    ),
    ("error.forbidden", "无权访问", "Not allowed"),
    ("error.not_found", "未找到", "Not found"),
    ("error.signin", "请重新登录", "Please sign in again"),
    ("error.conflict", "无法执行", "Cannot do that now"),
    ("error.unavailable", "服务暂不可用", "Service unavailable"),
    ("error.invalid", "输入有误", "Invalid input"),
    ("error.home", "返回首页", "Back to the start page"),
    ("year", "年度", "Year"),
    ("pick.beneficiary", "选择企业", "Choose an enterprise"),
    ("pick.provider", "选择服务商", "Choose a provider"),
    ("pick.open", "查看", "Open"),
    ("enterprise.title", "企业额度", "Enterprise balance"),
    (
        "enterprise.no_grants",
        "本年度没有获批的算力券。",
        "No approved grants this year.",
    ),
    (
        "enterprise.monthly",
        "每月到账补贴",
        "Subsidy received per month",
    ),
    (
        "enterprise.received_total",
        "本年度已到账合计",
        "Received this year",
    ),
    ("statement.title", "对账单", "Statements"),
    (
        "statement.enterprise_intro",
        "已过账结算批次中本企业的明细行（CSV，与 settle export 列相同）。",
        "Your lines of the posted settlement runs (CSV, the columns of settle export).",
    ),
    (
        "statement.provider_intro",
        "已过账结算批次中本服务商的明细行（CSV，与 settle export 列相同）。",
        "Your lines of the posted settlement runs (CSV, the columns of settle export).",
    ),
    ("statement.download", "下载 CSV", "Download CSV"),
    ("cap", "额度上限", "Cap"),
    ("paid", "已拨付", "Paid"),
    ("pending", "待结算", "Pending"),
    ("remaining", "剩余", "Remaining"),
    ("left", "剩余", "Left"),
    ("no_cap", "无上限", "No cap"),
    ("no_pool", "无资金池上限", "No pool limit"),
    ("pool", "资金池", "Pool"),
    ("provider.title", "服务商", "Provider"),
    ("provider.payables", "应付款项", "Payables"),
    (
        "provider.daily",
        "每日收到的用量记录",
        "Usage records received per day",
    ),
    ("provider.rejects", "拒收原因", "Rejected records by reason"),
    ("programme", "政策项目", "Programme"),
    ("posted", "已过账", "Posted"),
    ("outstanding", "未付", "Outstanding"),
    ("none", "暂无数据", "Nothing yet"),
    ("day", "日期", "Day"),
    ("outcome.accepted", "已接收", "Accepted"),
    ("outcome.duplicate", "重复", "Duplicate"),
    ("outcome.conflict", "冲突", "Conflict"),
    ("outcome.rejected", "拒收", "Rejected"),
    ("reason", "原因", "Reason"),
    ("records", "记录数", "Records"),
    ("last_at", "最近一次", "Last seen"),
    ("examples", "示例", "Examples"),
    ("reject.missing_field", "缺少字段", "a field is missing"),
    ("reject.invalid_field", "字段无效", "a field is invalid"),
    ("reject.unknown_provider", "未知服务商", "unknown provider"),
    (
        "reject.unknown_beneficiary",
        "未知企业",
        "unknown beneficiary",
    ),
    ("reject.unknown_sku", "未知产品（SKU）", "unknown SKU"),
    (
        "reject.sku_not_of_provider",
        "SKU 不属于该服务商",
        "SKU of another provider",
    ),
    (
        "reject.end_not_after_start",
        "结束时间不晚于开始时间",
        "end not after start",
    ),
    ("reject.negative_amount", "金额为负", "negative amount"),
    (
        "reject.amount_precision",
        "金额精度超过分",
        "amount finer than a fen",
    ),
    ("reject.negative_quantity", "数量为负", "negative quantity"),
    (
        "reject.above_list_price",
        "高于目录价格",
        "above the list price",
    ),
    ("reject.over_capacity", "超出算力容量", "over capacity"),
    (
        "reject.provider_mismatch",
        "服务商与令牌不符",
        "provider differs from the token",
    ),
    ("reject.no_registry", "尚未加载目录", "no registry loaded"),
    ("reject.unspecified", "其他", "other"),
    ("status", "状态", "Status"),
    ("status.open", "待审批", "Open"),
    ("status.approved", "已审批", "Approved"),
    ("status.posted", "已过账", "Posted"),
    ("status.cancelled", "已取消", "Cancelled"),
    (
        "finance.title",
        "财务：资金池与结算",
        "Finance: pools and settlement",
    ),
    ("finance.caps", "额度使用", "Caps"),
    (
        "finance.near_cap",
        "家接近上限（≥90%）",
        "near their cap (≥ 90%)",
    ),
    ("finance.at_cap", "家已达上限", "at their cap"),
    ("finance.capped", "家设有上限", "with a cap"),
    ("finance.monthly_paid", "每月拨付", "Paid per month"),
    ("finance.runs", "结算批次", "Settlement runs"),
    (
        "finance.create",
        "新建结算批次（预览）",
        "Create a settlement run (preview)",
    ),
    ("finance.create_submit", "生成预览", "Create preview"),
    (
        "finance.four_eyes",
        "四眼原则：批次须由另一位财务人员批准后才能过账。",
        "Four eyes: another finance user must approve a run before it is posted.",
    ),
    ("finance.payment", "登记付款", "Record a payment"),
    ("finance.payment_submit", "登记付款", "Record payment"),
    ("payment.recorded", "付款已登记。", "Payment recorded."),
    (
        "payment.duplicate",
        "该付款此前已登记（同一凭证号），未重复记账。",
        "This payment was recorded before (same reference); nothing was booked twice.",
    ),
    ("period", "期间", "Period"),
    ("period_hint", "期间（YYYY-MM）", "Period (YYYY-MM)"),
    ("lines", "明细行", "Lines"),
    ("amount", "金额", "Amount"),
    (
        "amount_cny",
        "金额（元，最多两位小数）",
        "Amount (CNY, at most 2 decimals)",
    ),
    ("created_by", "创建人", "Created by"),
    ("approved_by", "批准人", "Approved by"),
    ("posted_at", "过账时间", "Posted at"),
    ("registry", "目录版本", "Registry"),
    ("payee", "收款方", "Payee"),
    ("reference", "凭证号", "Reference"),
    ("optional", "可选", "optional"),
    ("run", "批次", "Run"),
    (
        "run.lines_preview",
        "预览明细（批准前核对）",
        "Preview lines (check before approving)",
    ),
    ("run.lines_posted", "已过账明细", "Posted lines"),
    ("action.approve", "批准", "Approve"),
    ("action.post", "过账", "Post"),
    ("action.cancel", "取消", "Cancel"),
    ("action.rederive", "重新推导", "Re-derive"),
    (
        "rederive.match",
        "重新推导结果与已过账明细逐字节一致。",
        "Re-derived from the frozen inputs: identical, byte for byte.",
    ),
    (
        "rederive.mismatch",
        "重新推导结果与已过账明细不一致",
        "Re-derived lines differ from the posted lines",
    ),
    ("beneficiary", "企业", "Beneficiary"),
    ("provider", "服务商", "Provider"),
    ("class", "类别", "Class"),
    ("base", "补贴基数", "Base"),
    ("ratio", "比例", "Ratio"),
    ("entitlement", "应享补贴", "Entitlement"),
    ("posted_before", "此前已过账", "Posted before"),
    ("cut_by", "限额", "Cut by"),
    ("adjustment", "调整", "adjustment"),
    ("audit.title", "审计", "Audit"),
    ("audit.journal", "记账凭证", "Journal"),
    ("audit.shown", "显示", "Showing"),
    ("audit.trial_balance", "试算平衡表", "Trial balance"),
    ("audit.balanced", "借贷平衡", "Balanced"),
    ("audit.unbalanced", "借贷不平衡！", "NOT balanced!"),
    ("audit.posted_runs", "已过账批次", "Posted runs"),
    ("account", "科目", "Account"),
    ("from", "起始日期", "From"),
    ("to", "截止日期", "To"),
    ("filter", "筛选", "Filter"),
    ("time", "时间", "Time"),
    ("kind", "类型", "Kind"),
    ("debit", "借方", "Debit"),
    ("credit", "贷方", "Credit"),
    ("balance", "余额", "Balance"),
    ("total", "合计", "Total"),
];

/// The string of `key` in `lang`; an unknown key gives "" and a warning (the tests check that
/// every key the pages use exists).
pub fn t(lang: Lang, key: &str) -> &'static str {
    match STRINGS.iter().find(|(k, _, _)| *k == key) {
        Some((_, zh, en)) => match lang {
            Lang::Zh => zh,
            Lang::En => en,
        },
        None => {
            tracing::warn!(key, "console string missing");
            ""
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Both languages are complete, keys unique, and every key built at run time exists.
    #[test]
    fn table_is_complete() {
        let mut seen = std::collections::HashSet::new();
        for (k, zh, en) in STRINGS {
            assert!(seen.insert(*k), "duplicate key {k}");
            assert!(
                !zh.is_empty() && !en.is_empty(),
                "{k} is empty in a language"
            );
        }
        let dynamic = [
            "role.provider",
            "role.beneficiary",
            "role.finance",
            "role.auditor",
            "role.admin",
            "pick.beneficiary",
            "pick.provider",
            "outcome.accepted",
            "outcome.duplicate",
            "outcome.conflict",
            "outcome.rejected",
            "status.open",
            "status.approved",
            "status.posted",
            "status.cancelled",
            "action.approve",
            "action.post",
            "action.cancel",
            "action.rederive",
            "via.password",
            "via.sso",
            "via.token",
        ];
        for k in dynamic {
            assert!(seen.contains(k), "missing {k}");
        }
        // Every literal key the pages and the router use.
        for source in [
            include_str!("pages.rs"),
            include_str!("mod.rs"),
            include_str!("account.rs"),
        ] {
            for part in source
                .split("tr(ctx, \"")
                .skip(1)
                .chain(source.split("t(lang, \"").skip(1))
            {
                let key = &part[..part.find('"').unwrap()];
                assert!(seen.contains(key), "missing key {key}");
            }
        }
        assert_eq!(t(Lang::Zh, "nav.finance"), "财务");
        assert_eq!(t(Lang::En, "nav.finance"), "Finance");
    }
}
