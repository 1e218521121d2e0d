//! Sign-in, second factor, sign-out, and the signed-in user's own password and second factor.

use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Data, Form};
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use askama::Template;
use secrecy::SecretString;
use serde::Deserialize;

use crate::audit::{AuditAction, AuditEvent};
use crate::auth::guard::{
    client_address, cookie, csrf_cookie_name, removal_cookie, session_cookie_name, ActiveSession,
    AnySession, RequestSession,
};
use crate::auth::session::{new_csrf_token, FlashKind, Session, SessionStage, SessionToken};
use crate::auth::{self, totp, AuthError, LoginResult};
use crate::context::AppContext;
use crate::error::AppError;
use crate::web::pages::{push_flash, render, see_other, Chrome};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/login", web::get().to(login_page))
        .route("/login", web::post().to(login_submit))
        .route("/login/second-factor", web::get().to(second_factor_page))
        .route("/login/second-factor", web::post().to(second_factor_submit))
        .route("/logout", web::post().to(logout))
        .route("/account/password", web::get().to(password_page))
        .route("/account/password", web::post().to(password_submit))
        .route("/account/second-factor", web::get().to(enrol_page))
        .route("/account/second-factor", web::post().to(enrol_submit))
        .route("/account/second-factor/qr.svg", web::get().to(enrol_qr));
}

#[derive(Template)]
#[template(path = "auth/login.html")]
struct LoginPage {
    chrome: Chrome,
    csrf_token: String,
    email: String,
    error: Option<String>,
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: SecretString,
}

/// The pre-session CSRF token lives in its own cookie (double submit): there is no session yet.
fn login_csrf(request: &HttpRequest, tls: bool) -> String {
    request
        .cookie(csrf_cookie_name(tls))
        .map(|c| c.value().to_owned())
        .filter(|value| value.len() >= 32)
        .unwrap_or_else(new_csrf_token)
}

fn login_form_response(
    request: &HttpRequest,
    tls: bool,
    email: String,
    error: Option<String>,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let csrf_token = login_csrf(request, tls);
    let page = LoginPage {
        chrome: Chrome::anonymous("Sign in"),
        csrf_token: csrf_token.clone(),
        email,
        error,
    };
    let mut response = render(&page, status)?;
    response
        .add_cookie(&cookie(csrf_cookie_name(tls), csrf_token, tls))
        .map_err(|error| AppError::internal(&error))?;
    Ok(response)
}

async fn login_page(
    request: HttpRequest,
    context: Data<AppContext>,
) -> Result<HttpResponse, AppError> {
    if request.extensions().get::<RequestSession>().is_some() {
        return Ok(see_other("/"));
    }
    login_form_response(
        &request,
        context.uses_tls(),
        String::new(),
        None,
        StatusCode::OK,
    )
}

async fn login_submit(
    request: HttpRequest,
    context: Data<AppContext>,
    form: Form<LoginForm>,
) -> Result<HttpResponse, AppError> {
    let tls = context.uses_tls();
    let client = client_address(&request);
    let LoginForm { email, password } = form.into_inner();
    let previous = request
        .cookie(session_cookie_name(tls))
        .map(|c| SessionToken::from_cookie(c.value()));
    let typed_email = email.clone();
    let outcome = web::block(move || -> Result<_, AppError> {
        let result = auth::check_password(&context, &typed_email, &password, client)?;
        match result {
            LoginResult::Accepted(user) => {
                // A new id at every log-in: a session fixed before log-in is never promoted.
                if let Some(previous) = previous {
                    context.sessions.delete(&previous)?;
                }
                let (token, session) = auth::start_session(&context, &user, client)?;
                Ok(Ok((token, session.stage)))
            }
            other => Ok(Err(other)),
        }
    })
    .await??;
    match outcome {
        Ok((token, stage)) => {
            let next = match stage {
                SessionStage::AwaitingSecondFactor => "/login/second-factor",
                SessionStage::Active => "/",
            };
            let mut response = see_other(next);
            response
                .add_cookie(&cookie(
                    session_cookie_name(tls),
                    token.as_str().to_owned(),
                    tls,
                ))
                .map_err(|error| AppError::internal(&error))?;
            Ok(response)
        }
        Err(LoginResult::Locked { retry_after }) => {
            let minutes = retry_after.as_secs().div_ceil(60).max(1);
            let message = format!("Too many failed attempts. Try again in {minutes} minute(s).");
            login_form_response(
                &request,
                tls,
                email,
                Some(message),
                StatusCode::TOO_MANY_REQUESTS,
            )
        }
        Err(_) => login_form_response(
            &request,
            tls,
            email,
            Some("The e-mail address or the password is not correct.".to_owned()),
            StatusCode::UNAUTHORIZED,
        ),
    }
}

#[derive(Template)]
#[template(path = "auth/second_factor.html")]
struct SecondFactorPage {
    chrome: Chrome,
    error: Option<String>,
}

#[derive(Deserialize)]
struct CodeForm {
    code: String,
}

fn second_factor_chrome(session: &RequestSession) -> Chrome {
    let mut chrome = Chrome::anonymous("Second factor");
    chrome.csrf_token.clone_from(&session.session.csrf_token);
    chrome
}

async fn second_factor_page(session: AnySession) -> Result<HttpResponse, AppError> {
    if session.0.session.stage == SessionStage::Active {
        return Ok(see_other("/"));
    }
    render(
        &SecondFactorPage {
            chrome: second_factor_chrome(&session.0),
            error: None,
        },
        StatusCode::OK,
    )
}

async fn second_factor_submit(
    request: HttpRequest,
    context: Data<AppContext>,
    session: AnySession,
    form: Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    let current = session.0;
    if current.session.stage == SessionStage::Active {
        return Ok(see_other("/"));
    }
    let client = client_address(&request);
    let token = current.token.clone();
    let mut record = current.session.clone();
    let result = web::block(move || {
        auth::complete_second_factor(&context, &token, &mut record, &form.code, client)
    })
    .await?;
    match result {
        Ok(()) => Ok(see_other("/")),
        Err(AuthError::InvalidCode) => render(
            &SecondFactorPage {
                chrome: second_factor_chrome(&current),
                error: Some(AuthError::InvalidCode.to_string()),
            },
            StatusCode::UNAUTHORIZED,
        ),
        Err(other) => Err(other.into()),
    }
}

async fn logout(
    request: HttpRequest,
    context: Data<AppContext>,
    session: AnySession,
) -> Result<HttpResponse, AppError> {
    let tls = context.uses_tls();
    let client = client_address(&request);
    let current = session.0;
    web::block(move || -> Result<(), AppError> {
        context.sessions.delete(&current.token)?;
        context.audit(
            AuditEvent::new(
                current.user.tenant,
                current.user.actor(),
                AuditAction::Logout,
                format!("user {}", current.user.id),
            )
            .client(client.map(|ip| ip.to_string())),
        )?;
        Ok(())
    })
    .await??;
    let mut response = see_other("/login");
    response
        .add_cookie(&removal_cookie(session_cookie_name(tls), tls))
        .map_err(|error| AppError::internal(&error))?;
    Ok(response)
}

#[derive(Template)]
#[template(path = "auth/password.html")]
struct PasswordPage {
    chrome: Chrome,
    must_change: bool,
    error: Option<String>,
    min_length: usize,
}

#[derive(Deserialize)]
struct PasswordForm {
    current: SecretString,
    new: SecretString,
    confirm: SecretString,
}

async fn password_page(
    context: Data<AppContext>,
    session: ActiveSession,
) -> Result<HttpResponse, AppError> {
    let current = session.0;
    let page = web::block(move || -> Result<PasswordPage, AppError> {
        let tenant = match current.user.tenant {
            Some(id) => context.tenants.get(id)?,
            None => None,
        };
        Ok(PasswordPage {
            chrome: Chrome::for_session(
                &context,
                &current,
                tenant.as_ref(),
                "Password",
                "/account/password",
            )?,
            must_change: current.user.must_change_password,
            error: None,
            min_length: crate::users::MIN_PASSWORD_CHARS,
        })
    })
    .await??;
    render(&page, StatusCode::OK)
}

async fn password_submit(
    request: HttpRequest,
    context: Data<AppContext>,
    session: ActiveSession,
    form: Form<PasswordForm>,
) -> Result<HttpResponse, AppError> {
    let tls = context.uses_tls();
    let client = client_address(&request);
    let current = session.0;
    let form = form.into_inner();
    let outcome = web::block(
        move || -> Result<Result<SessionToken, (Chrome, bool, String)>, AppError> {
            match auth::change_own_password(
                &context,
                &current.user,
                &form.current,
                &form.new,
                &form.confirm,
                client,
            ) {
                Ok(updated) => {
                    // Every session of the user ended with the old epoch; this one continues anew.
                    context.sessions.delete(&current.token)?;
                    let token = context
                        .sessions
                        .create(&Session::new(&updated, SessionStage::Active))?;
                    let fresh = RequestSession {
                        token: token.clone(),
                        session: context
                            .sessions
                            .get(&token)?
                            .ok_or(AppError::SignInRequired)?,
                        user: updated,
                        second_factor_required: current.second_factor_required,
                    };
                    push_flash(
                        &context,
                        &fresh,
                        FlashKind::Success,
                        "Your password was changed. Other sessions were signed out.",
                    )?;
                    Ok(Ok(token))
                }
                Err(
                    error @ (AuthError::WrongCurrentPassword
                    | AuthError::PasswordMismatch
                    | AuthError::User(_)),
                ) => {
                    let message = AppError::from(error).to_string();
                    let tenant = match current.user.tenant {
                        Some(id) => context.tenants.get(id)?,
                        None => None,
                    };
                    let chrome = Chrome::for_session(
                        &context,
                        &current,
                        tenant.as_ref(),
                        "Password",
                        "/account/password",
                    )?;
                    Ok(Err((chrome, current.user.must_change_password, message)))
                }
                Err(other) => Err(other.into()),
            }
        },
    )
    .await??;
    match outcome {
        Ok(token) => {
            let mut response = see_other("/");
            response
                .add_cookie(&cookie(
                    session_cookie_name(tls),
                    token.as_str().to_owned(),
                    tls,
                ))
                .map_err(|error| AppError::internal(&error))?;
            Ok(response)
        }
        Err((chrome, must_change, message)) => render(
            &PasswordPage {
                chrome,
                must_change,
                error: Some(message),
                min_length: crate::users::MIN_PASSWORD_CHARS,
            },
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    }
}

#[derive(Template)]
#[template(path = "auth/second_factor_enrol.html")]
struct EnrolPage {
    chrome: Chrome,
    enrolled: bool,
    recovery_left: usize,
    secret_base32: String,
    required: bool,
    error: Option<String>,
    recovery_codes: Vec<String>,
}

fn enrol_page_for(
    context: &AppContext,
    current: &RequestSession,
    error: Option<String>,
    recovery_codes: Vec<String>,
) -> Result<EnrolPage, AppError> {
    let mut current = current.clone();
    let user = context
        .users
        .get(current.user.reference())?
        .ok_or(AppError::SignInRequired)?;
    let mut secret_base32 = String::new();
    if user.totp.is_none() {
        let secret = if let Some(secret) = &current.session.pending_totp_secret {
            secret.clone()
        } else {
            let secret = totp::new_secret();
            current.session.pending_totp_secret = Some(secret.clone());
            context.sessions.save(&current.token, &current.session)?;
            secret
        };
        secret_base32 = totp::secret_base32(&secret);
    }
    let tenant = match user.tenant {
        Some(id) => context.tenants.get(id)?,
        None => None,
    };
    Ok(EnrolPage {
        chrome: Chrome::for_session(
            context,
            &current,
            tenant.as_ref(),
            "Two-factor sign-in",
            "/account/second-factor",
        )?,
        enrolled: user.totp.is_some(),
        recovery_left: user
            .totp
            .as_ref()
            .map_or(0, |credential| credential.recovery_hashes.len()),
        secret_base32,
        required: current.second_factor_required,
        error,
        recovery_codes,
    })
}

async fn enrol_page(
    context: Data<AppContext>,
    session: ActiveSession,
) -> Result<HttpResponse, AppError> {
    let current = session.0;
    let page = web::block(move || enrol_page_for(&context, &current, None, Vec::new())).await??;
    render(&page, StatusCode::OK)
}

async fn enrol_submit(
    request: HttpRequest,
    context: Data<AppContext>,
    session: ActiveSession,
    form: Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    let client = client_address(&request);
    let current = session.0;
    let (page, status) = web::block(move || -> Result<(EnrolPage, StatusCode), AppError> {
        let Some(secret) = current.session.pending_totp_secret.clone() else {
            return Ok((
                enrol_page_for(&context, &current, None, Vec::new())?,
                StatusCode::OK,
            ));
        };
        match auth::enrol_totp(&context, &current.user, &secret, &form.code, client) {
            Ok(codes) => {
                let mut updated = current.clone();
                updated.session.pending_totp_secret = None;
                context.sessions.save(&updated.token, &updated.session)?;
                Ok((
                    enrol_page_for(&context, &updated, None, codes)?,
                    StatusCode::OK,
                ))
            }
            Err(AuthError::InvalidCode) => Ok((
                enrol_page_for(
                    &context,
                    &current,
                    Some(AuthError::InvalidCode.to_string()),
                    Vec::new(),
                )?,
                StatusCode::UNPROCESSABLE_ENTITY,
            )),
            Err(other) => Err(other.into()),
        }
    })
    .await??;
    render(&page, status)
}

async fn enrol_qr(session: ActiveSession) -> Result<HttpResponse, AppError> {
    let current = session.0;
    let secret = current
        .session
        .pending_totp_secret
        .ok_or(AppError::NotFound)?;
    let uri = totp::provisioning_uri(&secret, current.user.email.as_str());
    let svg = totp::qr_svg(&uri).ok_or(AppError::NotFound)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "image/svg+xml"))
        .body(svg))
}
