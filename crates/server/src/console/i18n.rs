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
    (
        "confirm.other_payees",
        "其余 {n} 个收款方",
        "{n} other payees",
    ),
    (
        "run.lines_all",
        "共 {n} 条明细，合计 {amount}",
        "{n} lines, {amount} in all",
    ),
    (
        "run.lines_of",
        "{beneficiary}：{n} 条明细，合计 {amount}",
        "{beneficiary}: {n} lines, {amount} in all",
    ),
    ("run.lines_filter_hint", "企业编号", "enterprise id"),
    (
        "preparing.title",
        "正在准备余额数字",
        "Preparing the balance figures",
    ),
    (
        "preparing.body",
        "服务刚刚启动，正在从已存的用量中准备本年度的余额数字，已用 {s} 秒。大型数据库需要十几秒。",
        "The server has just started and is preparing this year's balance figures from the stored usage: {s} s so far. A large database takes ten to twenty seconds.",
    ),
    (
        "preparing.refresh",
        "本页每 5 秒自动刷新，准备好后即显示。",
        "This page refreshes every 5 seconds and shows them once they are ready.",
    ),
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
        "每月结算补贴",
        "Subsidy settled per month",
    ),
    (
        "enterprise.received_total",
        "本年度已结算合计",
        "Settled this year",
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
    ("pending.owed_back", "（应追回）", "(owed back)"),
    ("remaining", "剩余", "Remaining"),
    ("left", "剩余", "Left"),
    ("no_cap", "无上限", "No cap"),
    ("no_pool", "无资金池上限", "No pool limit"),
    ("pool", "资金池", "Pool"),
    ("provider.title", "服务商", "Provider"),
    (
        "provider.daily",
        "每日收到的用量记录",
        "Usage records received per day",
    ),
    ("provider.rejects", "拒收原因", "Rejected records by reason"),
    ("programme", "政策项目", "Programme"),
    ("posted", "已过账", "Posted"),
    // The words for money (docs/rules.md): one meaning each, on every page.
    ("settled", "已结算", "Settled"),
    ("entitled", "应享", "Entitled"),
    ("paid_out", "已拨付", "Paid out"),
    (
        "paid_out.self",
        "已拨付给企业",
        "Paid out to the enterprise",
    ),
    (
        "paid_out.providers",
        "已代付给服务商",
        "Paid out to providers on its behalf",
    ),
    ("outstanding", "待拨付", "Outstanding"),
    ("none", "暂无数据", "Nothing yet"),
    ("day", "日期", "Day"),
    ("outcome.accepted", "已接收", "Accepted"),
    ("outcome.duplicate", "重复", "Duplicate"),
    ("outcome.conflict", "冲突", "Conflict"),
    ("outcome.rejected", "拒收", "Rejected"),
    ("reason", "原因", "Reason"),
    ("records", "记录数", "Records"),
    ("records.one", "1 条记录", "1 record"),
    (
        "payment.programme_auto",
        "自动：欠该收款方款项的唯一项目",
        "Automatic: the one programme that owes the payee",
    ),
    ("records.n", "{n} 条记录", "{n} records"),
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
    ("reject.unknown_sku", "未知计费项", "unknown SKU"),
    (
        "reject.sku_not_of_provider",
        "计费项不属于该服务商",
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
    // A rejected record said in the page's language (provider page): one sentence per reject
    // code naming the record ({record}) and its field ({field}, one of `reject.field.*`).
    ("reject.field.provider", "服务商", "provider"),
    ("reject.field.record_id", "记录编号", "record id"),
    ("reject.field.beneficiary", "企业", "beneficiary"),
    ("reject.field.sku", "计费项", "SKU"),
    ("reject.field.start", "开始时间", "start"),
    ("reject.field.end", "结束时间", "end"),
    ("reject.field.quantity", "数量", "quantity"),
    ("reject.field.amount", "金额", "amount"),
    ("reject.field.unknown", "某个字段", "field"),
    (
        "reject.said.missing_field",
        "记录 {record} 缺少{field}。",
        "Record {record} has no {field}.",
    ),
    (
        "reject.said.invalid_field",
        "记录 {record} 的{field}格式无效或超出允许范围。",
        "Record {record} has an invalid {field} (malformed or out of range).",
    ),
    (
        "reject.said.unknown_provider",
        "记录 {record} 的{field}不在目录中。",
        "Record {record}: its {field} is not in the registry.",
    ),
    (
        "reject.said.unknown_beneficiary",
        "记录 {record} 的{field}不在目录中。",
        "Record {record}: its {field} is not in the registry.",
    ),
    (
        "reject.said.unknown_sku",
        "记录 {record} 的{field}不在目录中。",
        "Record {record}: its {field} is not in the registry.",
    ),
    (
        "reject.said.sku_not_of_provider",
        "记录 {record} 的{field}属于另一家服务商。",
        "Record {record}: its {field} belongs to another provider.",
    ),
    (
        "reject.said.end_not_after_start",
        "记录 {record} 的{field}不晚于开始时间。",
        "Record {record}: its {field} is not after its start.",
    ),
    (
        "reject.said.negative_amount",
        "记录 {record} 的{field}为负数。",
        "Record {record}: its {field} is negative.",
    ),
    (
        "reject.said.amount_precision",
        "记录 {record} 的{field}精确到分以下（超过两位小数）。",
        "Record {record}: its {field} is finer than a fen (more than 2 decimals).",
    ),
    (
        "reject.said.negative_quantity",
        "记录 {record} 的{field}为负数。",
        "Record {record}: its {field} is negative.",
    ),
    (
        "reject.said.above_list_price",
        "记录 {record} 的{field}高于目录价格。",
        "Record {record}: its {field} is above the list price.",
    ),
    (
        "reject.said.over_capacity",
        "记录 {record} 的{field}会使该计费项超出算力容量。",
        "Record {record}: its {field} would pass the SKU's capacity.",
    ),
    (
        "reject.said.amount_out_of_range",
        "记录 {record} 的{field}超出允许范围。",
        "Record {record}: its {field} is out of the accepted range.",
    ),
    (
        "reject.said.quantity_out_of_range",
        "记录 {record} 的{field}超出允许范围。",
        "Record {record}: its {field} is out of the accepted range.",
    ),
    (
        "reject.said.provider_mismatch",
        "记录 {record} 的{field}与所用令牌的服务商不符。",
        "Record {record}: its {field} is not the provider of the token it was sent with.",
    ),
    (
        "reject.said.no_registry",
        "记录 {record} 到达时尚未加载目录。",
        "Record {record} arrived before any registry was loaded.",
    ),
    (
        "reject.said.unspecified",
        "记录 {record} 被拒收。",
        "Record {record} was rejected.",
    ),
    (
        "reject.amount_out_of_range",
        "金额超出范围",
        "amount out of range",
    ),
    (
        "reject.quantity_out_of_range",
        "数量超出范围",
        "quantity out of range",
    ),
    ("reject.engine_detail", "技术细节", "Technical detail"),
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
    ("finance.monthly_paid", "每月结算", "Settled per month"),
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
    (
        "run.created_by_you",
        "您创建了此批次：须由另一位财务人员批准（四眼原则）。",
        "You created this run: another finance user must approve it (four eyes).",
    ),
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
    ("audit.journals", "共 {n} 张凭证", "{n} journals"),
    (
        "audit.journals_more",
        "超过 {n} 张凭证",
        "More than {n} journals",
    ),
    ("audit.accounts", "共 {n} 个科目", "{n} accounts"),
    (
        "audit.entries_cut",
        "仅显示前 {shown} 条分录，共 {n} 条",
        "First {shown} of {n} entries shown",
    ),
    (
        "audit.entries_matching",
        "仅显示科目以 {prefix} 开头的分录（{shown} 条，本凭证共 {n} 条）",
        "Entries on accounts starting with {prefix} shown ({shown}; the journal has {n})",
    ),
    (
        "audit.all_posted",
        "更早的已过账批次见结算批次列表",
        "Earlier posted runs are in the settlement runs list",
    ),
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
    // Payments that need a second person (ledger.payment_confirm_above_fen).
    ("payment", "付款", "payment"),
    (
        "payment.threshold",
        "超过以下金额的付款需另一位财务人员确认后才记账：",
        "Payments above this amount are booked only when a second finance person confirms them:",
    ),
    (
        "payment.awaits_second",
        "付款已登记，金额超过复核限额，需另一位财务人员确认后才记账，应付款暂不变动",
        "Payment recorded. It is above the confirmation amount, so it is booked only when a second finance person confirms it; the payable is unchanged until then",
    ),
    (
        "payment.duplicate_awaiting",
        "该付款此前已登记（同一凭证号），仍在等待确认。",
        "It was recorded before (same reference) and still awaits confirmation.",
    ),
    (
        "payment.awaiting_title",
        "待确认的付款",
        "Payments awaiting confirmation",
    ),
    (
        "payment.four_eyes",
        "四眼原则：付款须由登记人以外的另一位财务人员确认，确认后才记账。",
        "Four eyes: a finance person other than the one who recorded a payment confirms it; only then is it booked.",
    ),
    ("payment.recorded_by", "登记人", "Recorded by"),
    (
        "payment.own",
        "由您登记，须他人确认",
        "recorded by you; another person confirms",
    ),
    ("payment.confirm", "确认并记账", "Confirm and book"),
    ("payment.withdraw", "撤回", "Withdraw"),
    // User administration (admin).
    ("nav.users", "用户", "Users"),
    ("users.title", "用户管理", "Users"),
    ("users.search", "登录名或姓名", "Login or name"),
    ("users.all_roles", "全部角色", "All roles"),
    ("users.name", "姓名", "Name"),
    ("users.role", "角色", "Role"),
    ("users.subject", "所属主体", "Subject"),
    (
        "users.subject_hint",
        "服务商或企业角色填写其编号，其他角色留空",
        "the provider or enterprise id for those roles; empty otherwise",
    ),
    ("users.email", "电子邮箱", "E-mail"),
    ("users.totp", "验证器", "Authenticator"),
    ("users.last_signin", "最近登录", "Last sign-in"),
    ("users.enabled", "已启用", "Enabled"),
    ("users.disabled", "已停用", "Disabled"),
    ("users.yes", "已绑定", "Enrolled"),
    ("users.no", "未绑定", "None"),
    ("users.kind", "类型", "Kind"),
    ("users.person", "个人用户", "Person"),
    ("users.service", "服务账号", "Service account"),
    ("users.created_at", "创建时间", "Created"),
    ("users.create", "新建用户", "Create a user"),
    (
        "users.create_intro",
        "为个人新建用户并设置初始密码；服务账号及其令牌请用命令行 suanli user create --service 创建。",
        "Creates a person with an initial password; service accounts and their tokens are made with suanli user create --service.",
    ),
    ("users.create_submit", "新建用户", "Create user"),
    ("users.new_password", "新密码", "New password"),
    (
        "users.password_hint",
        "12 至 128 个字符，不得包含登录名",
        "12 to 128 characters, not containing the login",
    ),
    (
        "users.password_again",
        "再次输入新密码",
        "New password again",
    ),
    ("users.access", "访问权限", "Access"),
    (
        "users.disable_hint",
        "停用后，该用户的令牌和控制台会话将在令牌复查间隔内失效；可随时重新启用。",
        "A disabled user's tokens and console sessions are refused within the token recheck time; enabling restores them.",
    ),
    ("users.disable", "停用用户", "Disable user"),
    ("users.enable", "启用用户", "Enable user"),
    ("users.change_role", "更改角色", "Change role"),
    ("users.change_role_submit", "更改角色", "Change role"),
    (
        "users.role_hint",
        "该用户的令牌同时改为新角色。",
        "The user's tokens get the new role too.",
    ),
    ("users.reset_password", "重置密码", "Reset password"),
    (
        "users.reset_password_submit",
        "设置新密码",
        "Set new password",
    ),
    (
        "users.service_no_password",
        "服务账号只用令牌登录，没有密码。",
        "A service account signs in with tokens only; it has no password.",
    ),
    (
        "users.reset_totp_confirm",
        "确认移除验证器：该用户下次用密码登录时需重新绑定（如其角色要求）",
        "confirm removing the authenticator: the user enrols again at the next password sign-in where the role requires it",
    ),
    ("users.reset_totp", "移除验证器", "Remove authenticator"),
    ("users.done_created", "用户已创建。", "User created."),
    ("users.done_disabled", "用户已停用。", "User disabled."),
    ("users.done_enabled", "用户已启用。", "User enabled."),
    ("users.done_role", "角色已更改。", "Role changed."),
    ("users.done_password", "密码已重置。", "Password reset."),
    (
        "users.done_totp",
        "验证器已移除。",
        "Authenticator removed.",
    ),
    // Chart axes.
    ("axis.month", "月份", "Month"),
    ("axis.day", "日期（日）", "Day of month"),
    ("axis.cny", "金额（元）", "CNY"),
    ("axis.records", "记录数", "Records"),
    // Codes shown by name: cut reasons, classes, accounts, funders, journal kinds.
    ("cut.beneficiary_cap", "企业额度上限", "beneficiary cap"),
    ("cut.provider_cap", "服务商额度上限", "provider cap"),
    ("cut.pool", "资金池上限", "pool"),
    ("category.compute", "算力", "compute"),
    ("category.model", "模型", "model"),
    ("category.data", "数据", "data"),
    ("chip.domestic", "国产芯片", "domestic chips"),
    ("chip.other", "其他芯片", "other chips"),
    ("class.registered", "已备案模型", "registered model"),
    ("account.expense", "资金池支出", "Subsidy expense"),
    ("account.payable", "应付款", "Payable"),
    ("account.paid", "已付款", "Paid out"),
    ("funder.national", "国家", "national"),
    ("funder.provincial", "省级", "provincial"),
    ("funder.municipal", "市级", "municipal"),
    ("funder.city", "市级", "city"),
    ("funder.district", "区级", "district"),
    ("journal.run", "结算过账", "Settlement"),
    ("journal.payment", "付款", "Payment"),
    ("journal.opening", "期初余额", "Opening balance"),
    ("debit_balance", "借方余额", "Debit balance"),
    (
        "credit_balance",
        "贷方余额（应付）",
        "Credit balance (owed)",
    ),
    // Confirmations before an action that cannot be taken back.
    ("confirm.post", "确认过账", "Confirm posting"),
    ("confirm.cancel", "确认取消", "Confirm cancelling"),
    (
        "confirm.effect.post",
        "过账后将生成记账凭证：以下收款方的应付款增加，企业的已结算增加（拨付要在登记付款后才发生）。过账不可撤销，更正只能在后续批次中调整。",
        "Posting books a journal: what each payee below is owed grows, and so does what each enterprise has settled (it is paid out when a payment is recorded). A posted run cannot be undone; corrections come as adjustments in later runs.",
    ),
    (
        "confirm.effect.cancel",
        "取消后该批次不能再批准或过账，其明细不会入账；之后可为同一期间新建批次。",
        "A cancelled run can no longer be approved or posted and books nothing; a new run of the same month can be created afterwards.",
    ),
    ("confirm.submit.post", "确认过账", "Post the run"),
    ("confirm.submit.cancel", "确认取消批次", "Cancel the run"),
    ("confirm.payees", "收款方数", "Payees"),
    ("confirm.back", "返回，不执行", "Back, do nothing"),
    (
        "confirm.payment_title",
        "确认登记付款",
        "Confirm the payment",
    ),
    (
        "confirm.effect.payment",
        "登记后将生成付款凭证：该收款方的待拨付金额减少。同一凭证号重复提交不会重复记账。",
        "Recording books a payment journal: what the payee is owed falls by the amount. The same reference sent again books nothing twice.",
    ),
    (
        "confirm.void_title",
        "确认作废用量记录",
        "Confirm voiding the usage record",
    ),
    (
        "confirm.effect.void",
        "作废后该记录不再计入补贴基数；如其所属期间已过账，下一结算批次将据此调整（扣回）。作废记入审计日志，不能撤销。",
        "A voided record no longer counts towards any subsidy; if its month was posted, the next settlement run adjusts for it (claws it back). The void is in the audit log and cannot be undone.",
    ),
    (
        "confirm.void_already",
        "该记录已于此前作废：再次作废不会改变任何数据。",
        "This record was voided before: voiding it again changes nothing.",
    ),
    ("confirm.submit.void", "确认作废", "Void the record"),
    ("void.form", "作废用量记录", "Void a usage record"),
    (
        "void.intro",
        "作废一条已提交的用量记录（如重复计费或错误记录）。提交后会先显示该记录供确认。",
        "Void a usage record you sent (a double charge, a wrong record). The record is shown for confirmation first.",
    ),
    ("void.record_id", "记录编号", "Record id"),
    ("void.reason", "作废原因", "Reason"),
    ("void.submit", "查看并作废", "Review and void"),
    ("void.title", "用量记录已作废", "Usage record voided"),
    ("void.done", "记录已作废。", "The record is voided."),
    (
        "void.before",
        "该记录此前已作废，未作任何更改。",
        "The record was voided before; nothing changed.",
    ),
    ("void.at", "作废时间", "Voided at"),
    ("record.beneficiary", "企业", "Beneficiary"),
    ("record.sku", "产品（SKU）", "SKU"),
    ("record.start", "开始", "Start"),
    ("record.end", "结束", "End"),
    ("record.quantity", "数量", "Quantity"),
    ("confirm.owed_now", "当前待拨付", "Owed now"),
    ("confirm.owed_after", "登记后待拨付", "Owed after"),
    ("confirm.submit.payment", "确认登记", "Record the payment"),
    // Refusal codes (codes.rs): shown next to the field, in the page's language.
    ("code.missing", "请填写此项", "is missing"),
    ("code.empty", "不能为空", "is empty"),
    ("code.too_long", "内容过长", "is too long"),
    (
        "code.not_utf8",
        "含有无效字符（不是 UTF-8）",
        "is not valid UTF-8",
    ),
    (
        "code.repeated",
        "同一字段提交了多次",
        "is given more than once",
    ),
    (
        "code.bad_escape",
        "编码有误（%-转义无效）",
        "has a malformed %-escape",
    ),
    (
        "code.form_too_large",
        "表单内容过多",
        "the form is too large",
    ),
    (
        "code.amount_not_a_number",
        "请填写金额（元），最多两位小数，不带千位分隔符，如 1000.50",
        "enter an amount in CNY with at most 2 decimals and no separators, e.g. 1000.50",
    ),
    (
        "code.amount_not_positive",
        "金额必须大于零",
        "the amount must be more than zero",
    ),
    (
        "code.period_not_a_month",
        "请选择月份（YYYY-MM）",
        "choose a month (YYYY-MM)",
    ),
    (
        "code.day_not_a_date",
        "请填写日期（YYYY-MM-DD）",
        "enter a date (YYYY-MM-DD)",
    ),
    ("code.year_not_a_year", "年度无效", "not a year"),
    ("code.run_not_a_number", "批次编号无效", "not a run number"),
    (
        "code.sign_in_again",
        "会话已结束，请重新登录",
        "the session ended; sign in again",
    ),
    (
        "code.csrf_missing",
        "表单缺少安全令牌，请刷新页面后重试",
        "the form carries no security token; reload the page",
    ),
    (
        "code.csrf_mismatch",
        "表单的安全令牌与当前会话不符，请刷新页面后重试",
        "the form's security token is not this session's; reload the page",
    ),
    (
        "code.role_refused",
        "您的角色无权执行此操作",
        "your role may not do this",
    ),
    (
        "code.other_party",
        "只能查看本单位的数据",
        "you may see only your own organisation's figures",
    ),
    (
        "code.enrol_first",
        "请先在账户页面绑定验证器",
        "enrol an authenticator on the account page first",
    ),
    (
        "code.not_your_session",
        "这不是您的会话",
        "that is not one of your sessions",
    ),
    (
        "code.code_wrong",
        "验证码错误、已过期或已使用",
        "the one-time code is wrong, expired or already used",
    ),
    (
        "code.enrol_reload",
        "请重新打开账户页面再绑定",
        "reload the account page and enrol again",
    ),
    (
        "code.enrol_with_password",
        "使用 API 令牌登录的会话不能绑定验证器；请用登录名和密码登录",
        "a session signed in with an API token cannot enrol an authenticator; sign in with your login and password",
    ),
    ("code.token_unknown", "令牌无效", "the token is unknown"),
    ("code.token_revoked", "令牌已撤销", "the token is revoked"),
    ("code.token_expired", "令牌已过期", "the token has expired"),
    (
        "code.token_user_disabled",
        "令牌所属用户已停用",
        "the token's user is disabled",
    ),
    (
        "code.programme_not_found",
        "当前目录中没有该政策项目",
        "no such programme in the current registry",
    ),
    (
        "code.period_outside_year",
        "该月份不在政策项目的财政年度内",
        "the month is outside the programme's fiscal year",
    ),
    (
        "code.run_exists",
        "该政策项目和期间已有未完成的批次",
        "a run of this programme and month is already open",
    ),
    (
        "code.earlier_run_open",
        "较早期间的批次尚未过账或取消：期间须按顺序过账",
        "a run of an earlier month is not posted or cancelled yet: months are posted in order",
    ),
    (
        "code.period_posted",
        "该政策项目已过账到更晚的期间；迟到的记录将在下一批次中调整",
        "the programme is posted up to a later month; late records are adjusted in the next run",
    ),
    (
        "code.nothing_to_settle",
        "该期间没有用量，也没有需要调整的明细",
        "nothing to settle in this month: no usage and no adjustments",
    ),
    ("code.run_not_found", "没有这个批次", "no such run"),
    (
        "code.run_not_open",
        "只有待审批的批次可以批准",
        "only an open run can be approved",
    ),
    (
        "code.run_not_approved",
        "只有已审批的批次可以过账",
        "only an approved run can be posted",
    ),
    (
        "code.run_posted",
        "已过账的批次不能取消",
        "a posted run cannot be cancelled",
    ),
    ("code.run_cancelled", "该批次已取消", "the run is cancelled"),
    (
        "code.run_stale",
        "该批次计算后又有其他批次过账：请取消并重新生成",
        "another run was posted after this one was computed: cancel it and create a new one",
    ),
    (
        "code.four_eyes",
        "四眼原则：批次须由创建人以外的另一位财务人员批准",
        "four eyes: a run must be approved by a finance user other than its creator",
    ),
    (
        "code.payment_four_eyes",
        "四眼原则：付款须由登记人以外的另一位财务人员确认",
        "four eyes: a payment is confirmed by a finance user other than the one who recorded it",
    ),
    (
        "code.run_changed_since_confirmed",
        "确认后批次已发生变化，请核对后重新确认",
        "the run changed after you confirmed; check it and confirm again",
    ),
    (
        "code.rederive_posted_only",
        "只有已过账的批次可以重新推导",
        "only posted runs are re-derived",
    ),
    (
        "code.payee_owed_nothing",
        "没有应付给该收款方的款项",
        "nothing is owed to this payee",
    ),
    (
        "code.programme_owes_nothing",
        "该政策项目没有应付给该收款方的款项",
        "this programme owes the payee nothing",
    ),
    (
        "code.several_programmes",
        "该收款方有多个政策项目的应付款，请填写政策项目",
        "several programmes owe this payee: name one",
    ),
    (
        "code.amount_exceeds_owed",
        "金额超过待拨付金额",
        "the amount is more than is owed",
    ),
    (
        "code.reference_reused",
        "该凭证号已用于另一笔付款",
        "this reference was already used for a different payment",
    ),
    (
        "code.payment_changed_since_confirmed",
        "确认的付款与提交的不一致，请重新填写",
        "the payment differs from the one confirmed; enter it again",
    ),
    (
        "code.record_not_found",
        "没有这条用量记录",
        "no such usage record of this provider",
    ),
    (
        "code.record_changed_since_confirmed",
        "确认的作废与提交的不一致，请重新填写",
        "the void differs from the one confirmed; enter it again",
    ),
    ("code.no_page", "没有这个页面", "no such page"),
    (
        "code.method_not_served",
        "不支持该请求方式",
        "this request method is not served",
    ),
    ("code.not_found", "未找到", "not found"),
    ("code.invalid", "输入有误", "invalid input"),
    (
        "code.subject_needed",
        "服务商或企业用户须填写其代表的编号",
        "a provider or enterprise user needs the id it speaks for",
    ),
    (
        "code.subject_not_taken",
        "只有服务商和企业用户才有所代表的编号",
        "only provider and enterprise users speak for an id",
    ),
    (
        "code.passwords_differ",
        "两次输入的密码不一致",
        "the passwords differ",
    ),
    (
        "code.password_weak",
        "密码不符合要求（12 至 128 个字符，不含控制字符，且不能与登录名相同）",
        "the password does not meet the policy",
    ),
    (
        "code.not_yourself",
        "不能对自己的账号执行此操作，请由另一位管理员操作",
        "you cannot do this to your own user; another admin can",
    ),
    ("code.confirm_first", "请先勾选确认", "confirm it first"),
    (
        "code.conflict",
        "当前状态下无法执行",
        "cannot be done in the current state",
    ),
    (
        "code.unavailable",
        "服务暂不可用，请稍后再试",
        "the service is unavailable; try again later",
    ),
    (
        "code.preparing",
        "服务刚刚启动，正在准备余额数字，请稍候",
        "the server has just started and is preparing the balance figures; a moment, please",
    ),
    // ── Explanations of run lines, the settlement statement (结算单) and the provider's
    // receivable. Placeholders in braces are filled by `explain.rs`.
    ("explain.title", "明细说明", "Why this amount"),
    ("explain.open", "说明", "Explain"),
    (
        "explain.all_lines",
        "查看该企业在本批次的全部明细行",
        "All of this enterprise's lines of the run",
    ),
    (
        "explain.demand_label",
        "需求（限额前）",
        "Demand (before limits)",
    ),
    ("explain.settled_before", "此前已结算", "Settled before"),
    ("explain.change", "本批变动", "Change"),
    ("explain.why", "计算依据", "Why"),
    (
        "explain.records",
        "来源用量记录",
        "Usage records it came from",
    ),
    ("explain.records_now", "当前未作废记录", "not void now:"),
    (
        "explain.search_record",
        "记录编号（开头）",
        "Record id (beginning)",
    ),
    ("explain.void_filter", "作废状态", "Void state"),
    ("explain.void_any", "全部", "All"),
    ("explain.void_no", "未作废", "Not void"),
    ("explain.void_yes", "已作废", "Void"),
    ("explain.record_id", "记录编号", "Record id"),
    ("explain.start", "开始", "Start"),
    ("explain.end", "结束", "End"),
    ("explain.quantity", "数量", "Quantity"),
    ("explain.next_records", "下一页记录", "Next records"),
    ("explain.record_counted", "有效", "counted"),
    (
        "explain.record_void",
        "已于 {at} 作废（{reason}），未计入本批基数",
        "void since {at} ({reason}), not in this run's base",
    ),
    (
        "explain.record_void_after",
        "已于 {at} 作废（{reason}），作废在本批创建之后，仍计入本批基数，由下次结算调整",
        "void since {at} ({reason}), after this run was created: still in its base, the next run adjusts it",
    ),
    ("explain.payee_self", "{name}（企业本身）", "{name} itself"),
    (
        "explain.payee_provider",
        "{name}（代企业收取）",
        "{name}, on the enterprise's behalf",
    ),
    (
        "explain.ratio_none",
        "无比例：该行所属月份的记录已全部作废或不存在，该行在 {programme} 下无应享补贴",
        "no ratio: nothing of the line is left in its month (its records are void or gone), so nothing is due on it under {programme}",
    ),
    (
        "explain.ratio_own",
        "比例 {ratio}：{programme} 对「{class}」的自有费率（R4）",
        "ratio {ratio}: the own rate of {programme} for {class} (R4)",
    ),
    (
        "explain.ratio_stacked_primary",
        "比例 {ratio}：「{class}」可叠加享受（R5）；{programme} 为主项目，按自有费率 {ratio}，{other} 叠加 {other_ratio}，合计 {sum}，不超过叠加上限 {ceiling}",
        "ratio {ratio}: {class} is stacked (R5); {programme} is the primary at its own {ratio}, and {other} tops it up with {other_ratio}, {sum} in all under the ceiling of {ceiling}",
    ),
    (
        "explain.ratio_stacked_second",
        "比例 {ratio}：「{class}」可叠加享受（R5）；{other} 为主项目（{other_ratio}），{programme} 叠加 min(自有费率 {own}，上限 {ceiling} − {other_ratio}) = {ratio}",
        "ratio {ratio}: {class} is stacked (R5); {other} is the primary at {other_ratio}, and {programme} tops it up with min(its own {own}, the ceiling {ceiling} − {other_ratio}) = {ratio}",
    ),
    ("explain.rate", "费率", "rate"),
    (
        "explain.most_favourable",
        "；按从优、就高、不重复原则选择最优方案：{chosen}，优于 {programmes} 的 {other}{tie}",
        "; the most favourable package (从优、就高、不重复): {chosen} against {other} for {programmes}{tie}",
    ),
    (
        "explain.tie_stacked",
        "（比例相同时叠加方案优先）",
        "; equal, and a stacked pair goes first",
    ),
    (
        "explain.tie_funder",
        "（比例相同时出资层级高者优先）",
        "; equal, and the higher funder level goes first",
    ),
    (
        "explain.tie_id",
        "（比例相同时项目编号小者优先）",
        "; equal, and the lower programme id goes first",
    ),
    (
        "explain.base",
        "补贴基数 {base}：第 {run} 批创建时该行 {period} 的用量记录合计；{now}",
        "base {base}: the line's usage records of {period} when run {run} was created; {now}",
    ),
    (
        "explain.base_same",
        "当前未作废的 {records} 条记录合计相同",
        "its {records} record(s) not void now total the same",
    ),
    (
        "explain.base_moved",
        "当前未作废的 {records} 条记录合计 {amount}：此后有记录到达或作废，由下次结算调整",
        "its {records} record(s) not void now total {amount}: records arrived or were voided since, which the next run adjusts",
    ),
    (
        "explain.demand",
        "需求 {demand} = {base} × {ratio}，四舍五入一次（R6）",
        "demand {demand} = {base} × {ratio}, rounded half up once (R6)",
    ),
    (
        "explain.no_cut",
        "；未被任何额度上限或资金池削减（R7、R8）",
        "; no cap or pool cut it (R7, R8)",
    ),
    ("explain.cut_had_demand", "需求 {amount}", "demand {amount}"),
    (
        "explain.cut_had_after",
        "经前面的限额后为 {amount}",
        "{amount} after the earlier limits",
    ),
    (
        "explain.limit_beneficiary",
        "{who} 的 {year} 年企业额度上限 {limit}",
        "the {year} cap of {limit} for {who}",
    ),
    (
        "explain.limit_provider",
        "{who} 的 {year} 年服务商额度上限 {limit}",
        "the {year} provider cap of {limit} for {who}",
    ),
    (
        "explain.limit_pool",
        "{programme} 的 {year} 年资金池 {limit}",
        "the {year} pool of {limit} of {programme}",
    ),
    (
        "explain.reached_with",
        "在第 {run} 批结算中用满",
        "was reached with run {run}",
    ),
    (
        "explain.reached_before",
        "在 {period} 之前已被先前结算用满",
        "had been reached before {period} by prior payments",
    ),
    (
        "explain.reached_restated",
        "按第 {run} 批重算，在 {period} 用满",
        "is reached in {period} as restated by run {run}",
    ),
    (
        "explain.prior_months",
        "以前月份 {amount}",
        "earlier months {amount}",
    ),
    (
        "explain.prior_opening",
        "期初余额 {amount}",
        "opening balances {amount}",
    ),
    ("explain.comma", "，", ", "),
    (
        "explain.prior_none",
        "{period} 之前未计入任何金额",
        "nothing counted before {period}",
    ),
    (
        "explain.prior",
        "{period} 之前已计入 {amount}：{parts}",
        "{amount} counted before {period}: {parts}",
    ),
    (
        "explain.cut",
        "{had}，削减至 {after}：{limit} {reached}（{prior}；剩余 {left}，由 {lines} 行共享，合计需求 {wanted}）",
        "{had}, cut to {after}: {limit} {reached} ({prior}; {left} left, shared by {lines} line(s) wanting {wanted})",
    ),
    ("explain.claw_back", "追回", "a claw-back"),
    ("explain.late_records", "补记", "late records"),
    (
        "explain.settles_adjustment",
        "调整 {period}（R9）：现应享 {entitled}，此前已结算 {before}，本批变动 {change}（{kind}）",
        "adjusts {period} (R9): entitled now {entitled}, settled before {before}, change {change} ({kind})",
    ),
    (
        "explain.settles_own",
        "{period} 应享 {entitled}，由本批结算",
        "entitled {entitled} for {period}, settled by this run",
    ),
    (
        "explain.settles_rest",
        "{period} 应享 {entitled}，此前已结算 {before}；本批结算 {change}",
        "entitled {entitled} for {period}, settled before {before}; this run settles {change}",
    ),
    ("explain.posted_lines", "已过账明细", "Posted lines"),
    (
        "explain.posted_lines_intro",
        "本年度已过账结算批次中本企业的明细行；点击“说明”查看比例、基数、来源记录和每一次削减的原因。",
        "Your lines of this year's posted runs; open one to see its ratio, base, the records it came from and why any limit cut it.",
    ),
    ("statement.sheet", "结算单", "Settlement statement"),
    (
        "statement.print_hint",
        "用浏览器打印（A4）即可得到签批用的结算单；打印时不含页头和按钮。",
        "Print this page (A4) for sign-off; the header and buttons are left out on paper.",
    ),
    ("statement.lines", "结算明细", "Lines"),
    ("statement.total", "合计", "Total"),
    ("statement.increases", "应付合计", "Owed by this run"),
    ("statement.claw_backs", "追回合计", "Clawed back"),
    ("statement.not_posted", "尚未过账", "not posted yet"),
    ("statement.by_payee", "按收款方汇总", "Totals per payee"),
    (
        "statement.summarised",
        "本批次共 {n} 条明细，此处不逐条列出：每个收款方的结算单列出其明细（见下表），批次导出含全部明细。",
        "This run has {n} lines, too many to list here: each payee's statement lists its lines (see the table below), and the run's export has all of them.",
    ),
    ("statement.of_payee", "收款方结算单", "Payee's statement"),
    ("statement.whole_run", "整批结算单", "Whole run's statement"),
    ("statement.sign_off", "签批", "Sign-off"),
    ("statement.prepared", "制单", "Prepared by"),
    ("statement.approved", "审批", "Approved by"),
    ("statement.signature", "签字", "Signature"),
    ("provider.receivable", "应收补贴", "Subsidy receivable"),
    (
        "provider.receivable_intro",
        "结算给本服务商、由本服务商作为收款方代企业收取的补贴：已结算金额、已拨付给本服务商的金额，以及尚待拨付的应收余额。",
        "Subsidy settled to you as payee on the enterprises' behalf: what was settled, what has been paid out to you, and what you are still to receive.",
    ),
    (
        "provider.settled_to_you",
        "已结算（代企业收取）",
        "Settled to you (on enterprises' behalf)",
    ),
    (
        "provider.paid_out_to_you",
        "已拨付给本服务商",
        "Paid out to you",
    ),
    ("provider.still_receivable", "应收余额", "Still to receive"),
    // ---- Console lists: search, filters, pagination and exports (console/lists.rs) ----
    ("list.enterprises", "企业名录", "Enterprises"),
    ("list.providers", "服务商名录", "Providers"),
    ("list.runs", "结算批次", "Settlement runs"),
    ("list.payments", "拨付记录", "Payments"),
    ("list.records", "用量记录", "Usage records"),
    ("list.audit", "审计日志", "Audit log"),
    ("list.lists", "名录与记录", "Lists"),
    ("list.search_name_id", "名称或编号", "Name or id"),
    (
        "list.search_record",
        "记录编号（前缀）",
        "Record id (prefix)",
    ),
    ("list.cap_state", "额度状态", "Cap position"),
    ("list.enterprise", "企业", "Enterprise"),
    ("list.provider", "服务商", "Provider"),
    ("list.beneficiary", "企业", "Enterprise"),
    ("list.district", "区县", "District"),
    ("list.grants", "资助项目数", "Grants"),
    ("list.skus", "计费项数", "SKUs"),
    ("list.sku", "计费项", "SKU"),
    ("list.run", "批次", "Run"),
    ("list.record", "记录编号", "Record id"),
    ("list.start", "开始时间", "Start"),
    ("list.quantity", "用量", "Quantity"),
    ("list.void", "作废", "Void"),
    ("list.voided", "已作废", "Voided"),
    ("list.void_action", "操作", "Action"),
    ("list.void_reason", "作废原因", "Reason for voiding"),
    ("list.void_submit", "作废…", "Void…"),
    ("list.recorded_by", "录入人", "Recorded by"),
    ("list.confirmed_by", "复核人", "Confirmed by"),
    ("list.seq", "序号", "Seq"),
    ("list.actor", "操作人", "Actor"),
    ("list.action", "操作类型", "Action"),
    ("audit_action.run.create", "创建结算批次", "Run created"),
    ("audit_action.run.approve", "批准结算批次", "Run approved"),
    ("audit_action.run.post", "结算批次过账", "Run posted"),
    ("audit_action.run.cancel", "取消结算批次", "Run cancelled"),
    ("audit_action.payment", "登记付款", "Payment booked"),
    (
        "audit_action.payment.record",
        "登记待确认的付款",
        "Payment recorded, awaiting confirmation",
    ),
    (
        "audit_action.payment.confirm",
        "确认付款",
        "Payment confirmed",
    ),
    (
        "audit_action.payment.withdraw",
        "撤回付款",
        "Payment withdrawn",
    ),
    (
        "audit_action.opening.import",
        "导入期初余额",
        "Opening balances imported",
    ),
    (
        "audit_action.opening.confirm",
        "确认期初余额",
        "Opening balances confirmed",
    ),
    ("audit_action.registry.load", "加载目录", "Registry loaded"),
    (
        "audit_action.registry.patch",
        "修订目录",
        "Registry patched",
    ),
    (
        "audit_action.record.void",
        "作废用量记录",
        "Usage record voided",
    ),
    ("audit_action.user.create", "创建用户", "User created"),
    ("audit_action.user.disable", "停用用户", "User disabled"),
    ("audit_action.user.enable", "启用用户", "User enabled"),
    (
        "audit_action.user.set_role",
        "变更用户角色",
        "User's role changed",
    ),
    (
        "audit_action.user.reset_password",
        "重置密码",
        "Password reset",
    ),
    (
        "audit_action.user.totp_enrol",
        "绑定验证器",
        "Authenticator enrolled",
    ),
    (
        "audit_action.user.totp_reset",
        "重置验证器",
        "Authenticator reset",
    ),
    ("audit_action.token.create", "创建令牌", "Token created"),
    ("audit_action.token.revoke", "吊销令牌", "Token revoked"),
    ("list.subject", "对象", "Subject"),
    ("list.hash", "哈希", "Hash"),
    ("list.id", "编号", "id"),
    ("list.any", "全部", "Any"),
    ("list.sort", "排序", "Sort by"),
    ("list.dir", "顺序", "Order"),
    ("list.asc", "升序", "Ascending"),
    ("list.desc", "降序", "Descending"),
    ("list.per", "每页", "Per page"),
    ("list.apply", "筛选", "Apply"),
    ("list.reset", "清除筛选", "Clear filters"),
    ("list.count", "共 {n} 条", "{n} rows"),
    ("list.more_than", "超过 {n} 条", "More than {n} rows"),
    (
        "list.page_of",
        "第 {page} / {pages} 页",
        "Page {page} of {pages}",
    ),
    ("list.page_of_more", "第 {page} 页", "Page {page}"),
    ("list.first", "首页", "First"),
    ("list.prev", "上一页", "Previous"),
    ("list.next", "下一页", "Next"),
    ("list.last", "末页", "Last"),
    ("list.export", "导出", "Export"),
    ("list.export_csv", "导出 CSV", "Export CSV"),
    (
        "list.export_xlsx",
        "导出 Excel（XLSX）",
        "Export Excel (XLSX)",
    ),
    ("list.pages", "分页", "Pages"),
    ("list.chain_intact", "审计链完整", "Audit chain intact"),
    ("list.chain_broken", "审计链已损坏", "Audit chain broken"),
    ("list.chain_entries", "条目数", "Entries"),
    ("list.chain_head", "链头哈希", "Head hash"),
    ("list.choice.at_cap", "已达上限", "At cap"),
    (
        "list.choice.near_cap",
        "接近上限（≥ 90%）",
        "Near cap (≥ 90%)",
    ),
    ("list.choice.below_cap", "未达上限", "Below cap"),
    ("list.choice.no_cap", "无上限", "No cap"),
    ("list.choice.open", "待审批", "Open"),
    ("list.choice.approved", "已审批", "Approved"),
    ("list.choice.posted", "已过账", "Posted"),
    ("list.choice.cancelled", "已取消", "Cancelled"),
    ("list.choice.booked", "已入账", "Booked"),
    ("list.choice.awaiting", "待复核", "Awaiting confirmation"),
    ("list.choice.withdrawn", "已撤回", "Withdrawn"),
    ("list.choice.yes", "已作废", "Void"),
    ("list.choice.no", "有效", "Not void"),
    ("list.sort.name", "名称", "Name"),
    ("list.sort.id", "编号", "Id"),
    ("list.sort.settled", "已结算", "Settled"),
    ("list.sort.entitled", "应享", "Entitled"),
    ("list.sort.period", "期间", "Period"),
    ("list.sort.programme", "项目", "Programme"),
    ("list.sort.at", "时间", "Time"),
    ("list.sort.amount", "金额", "Amount"),
    ("list.sort.payee", "收款方", "Payee"),
    ("list.sort.record", "记录编号", "Record id"),
    ("list.sort.seq", "序号", "Seq"),
    (
        "code.unknown_parameter",
        "此列表没有这个参数",
        "this list has no such parameter",
    ),
    (
        "code.not_a_choice",
        "不是可选的值",
        "not one of the choices",
    ),
    (
        "code.page_not_a_number",
        "页码应为从 1 开始的整数",
        "the page is a whole number from 1",
    ),
    (
        "code.payee_not_in_run",
        "该收款方在本批次中没有明细",
        "this payee has no line in the run",
    ),
    (
        "code.page_beyond_end",
        "页码超出末页",
        "the page is past the last page",
    ),
    (
        "code.page_too_deep",
        "页码只到第 100,000 条记录：请从那里点“下一页”继续，或缩小筛选范围",
        "page numbers reach row 100,000: go on from there with Next, or narrow the filters",
    ),
    (
        "code.cursor_invalid",
        "这不是列表中的位置，请从第 1 页开始",
        "not a place in this list: start again from page 1",
    ),
    (
        "code.per_out_of_range",
        "每页条数应为 1 到 200",
        "the page size is from 1 to 200",
    ),
    (
        "code.range_reversed",
        "结束日期早于开始日期",
        "the end date is before the start date",
    ),
    (
        "code.export_too_large",
        "超过 100,000 条，请缩小筛选范围或导出 CSV",
        "more than 100,000 rows: narrow the filters or export CSV",
    ),
];

/// The string of `key` in `lang`, if the table has it: for codes that come from data (a
/// funder of the registry's funding split), shown as they are when the table has no name.
pub fn lookup(lang: Lang, key: &str) -> Option<&'static str> {
    STRINGS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, zh, en)| match lang {
            Lang::Zh => *zh,
            Lang::En => *en,
        })
}

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
            "payment.confirm",
            "payment.withdraw",
            "users.done_created",
            "users.done_disabled",
            "users.done_enabled",
            "users.done_role",
            "users.done_password",
            "users.done_totp",
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
            include_str!("payments.rs"),
            include_str!("users.rs"),
            include_str!("sso.rs"),
            include_str!("lists.rs"),
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

    // Every reject code the server stores has a name and a sentence naming the record and the
    // field, in both languages; every field the engine names has a name.
    #[test]
    fn every_reject_code_is_said() {
        let codes: Vec<String> = (0..)
            .map_while(|i| suanli_proto::v1::RejectReason::try_from(i).ok())
            .map(crate::grpc::metering::reason_code)
            .collect();
        assert!(codes.len() > 15, "{codes:?}");
        for code in codes {
            for lang in [Lang::Zh, Lang::En] {
                assert!(lookup(lang, &format!("reject.{code}")).is_some(), "{code}");
                let said = lookup(lang, &format!("reject.said.{code}"))
                    .unwrap_or_else(|| panic!("reject.said.{code}"));
                assert!(said.contains("{record}"), "{code}: {said}");
            }
        }
        for field in [
            "provider",
            "record_id",
            "beneficiary",
            "sku",
            "start",
            "end",
            "quantity",
            "amount",
            "unknown",
        ] {
            assert!(lookup(Lang::Zh, &format!("reject.field.{field}")).is_some());
        }
    }

    // Every literal key a template calls with t("…") exists, in both languages.
    #[test]
    fn template_keys_exist() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("the templates directory") {
            let path = entry.expect("a template").path();
            let source = std::fs::read_to_string(&path).expect("a template's text");
            // `t("…")` calls, not `kept("…")` or `tk("…")`.
            let calls = source.match_indices("t(\"").filter(|(at, _)| {
                !source[..*at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_')
            });
            for (at, _) in calls {
                let part = &source[at + 3..];
                let key = &part[..part.find('"').unwrap()];
                assert!(
                    STRINGS.iter().any(|(k, _, _)| *k == key),
                    "{} uses the missing key {key}",
                    path.display()
                );
                checked += 1;
            }
        }
        assert!(checked > 100, "only {checked} keys found in the templates");
    }
}
