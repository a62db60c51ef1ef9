//! Logins, device registration and revocation.

use crate::error::{ApiError, ApiJson, ApiPath};
use crate::state::{AppState, Auth, SharedState};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use cpm_core::{DeviceClass, Name};
use cpm_proto::{Device, ErrorBody, LoginRequest, RegisterDeviceRequest, RegisteredDevice, TokenResponse};
use cpm_store::{DeviceRecord, StoreError, UserId, secret};
use std::sync::OnceLock;

fn device(state: &AppState, record: DeviceRecord) -> Device {
    Device {
        online: state.is_online(&record.id),
        id: record.id,
        name: record.name,
        class: record.class,
        time_zone: record.time_zone,
        registered: record.registered,
        last_seen: record.last_seen,
        last_sync: record.last_sync,
        revoked: record.revoked,
    }
}

/// Checks a password. An unknown user costs the same argon2 work as a wrong password, so the
/// answer time does not tell which user names exist.
async fn check_password(state: &SharedState, user: String, password: String) -> Result<UserId, ApiError> {
    static UNKNOWN_USER_HASH: OnceLock<String> = OnceLock::new();
    state
        .call(move |service| {
            let (user, phc) = match service.store.credentials(&user) {
                Ok(found) => found,
                Err(StoreError::BadCredentials) => {
                    let decoy = UNKNOWN_USER_HASH.get_or_init(|| secret::hash_password("decoy").unwrap_or_default());
                    secret::verify_password(&password, decoy);
                    return Err(StoreError::BadCredentials.into());
                }
                Err(error) => return Err(error.into()),
            };
            if secret::verify_password(&password, &phc) { Ok(user) } else { Err(StoreError::BadCredentials.into()) }
        })
        .await
}

#[utoipa::path(post, path = "/v1/login", tag = "account", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = ErrorBody)))]
pub async fn login(
    State(state): State<SharedState>,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let user = check_password(&state, request.user.clone(), request.password).await?;
    let token = secret::new_token()?;
    let hash = secret::token_hash(&token);
    state.call(move |service| Ok(service.store.add_token(user, &hash)?)).await?;
    Ok(Json(TokenResponse { user: request.user, token }))
}

#[utoipa::path(post, path = "/v1/devices", tag = "account", request_body = RegisterDeviceRequest,
    responses((status = 201, body = RegisteredDevice), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn register_device(
    State(state): State<SharedState>,
    ApiJson(request): ApiJson<RegisterDeviceRequest>,
) -> Result<(StatusCode, Json<RegisteredDevice>), ApiError> {
    let name =
        Name::parse(&request.name).map_err(|error| ApiError::invalid_name(format!("bad device name: {error}")))?;
    let class: DeviceClass = request.class.parse().map_err(ApiError::bad_request)?;
    if let Some(zone) = &request.time_zone
        && jiff::tz::db().get(zone).is_err()
    {
        return Err(ApiError::bad_request(format!(
            "unknown time zone {zone:?} (use an IANA name such as Europe/Paris)"
        )));
    }
    let user = check_password(&state, request.user, request.password).await?;
    let token = secret::new_token()?;
    let hash = secret::token_hash(&token);
    let record = state
        .call(move |service| {
            let zone = request.time_zone.as_deref();
            Ok(match &request.replaces {
                Some(replaced) => service.store.replace_device(user, replaced, &name, class.as_str(), zone, &hash)?,
                None => service.store.register_device(user, &name, class.as_str(), zone, &hash)?,
            })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(RegisteredDevice { device: device(&state, record), token })))
}

#[utoipa::path(get, path = "/v1/devices", tag = "account", security(("bearer" = [])),
    responses((status = 200, body = Vec<Device>), (status = 401, body = ErrorBody)))]
pub async fn list_devices(
    State(state): State<SharedState>,
    Auth(principal): Auth,
) -> Result<Json<Vec<Device>>, ApiError> {
    let records = state.call(move |service| Ok(service.store.devices(principal.user_id)?)).await?;
    Ok(Json(records.into_iter().map(|record| device(&state, record)).collect()))
}

#[utoipa::path(delete, path = "/v1/devices/{name}", tag = "account", security(("bearer" = [])),
    params(("name" = String, Path, description = "The device's name")),
    responses((status = 200, body = Device), (status = 404, body = ErrorBody)))]
pub async fn revoke_device(
    State(state): State<SharedState>,
    Auth(principal): Auth,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Device>, ApiError> {
    let record = state.call(move |service| Ok(service.store.revoke_device(principal.user_id, &name)?)).await?;
    Ok(Json(device(&state, record)))
}
