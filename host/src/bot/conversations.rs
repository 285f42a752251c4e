//! Conversations and users the bot asks for by tags, creates, changes, and the users
//! taking part in conversations. A conversation always belongs to
//! one installation and one of its channels; its tags must be ones the channel
//! declares. A user may belong to an installation (tags it declares) or to the bot
//! itself (any tags).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{BotError, BotErrorKind, check_tags, find_installation, list_or_none, present_tags};
use crate::plugins::{Installation, PluginHost};
use crate::store::{ConversationRecord, EntityQuery, PageRequest, TagChanges, Tags, UserChanges, UserRecord};

/// `getOrCreateConversation`.
#[derive(Debug, Clone, Default)]
pub struct ConversationRequest {
    pub channel: String,
    /// `null` or empty values mean "no such tag".
    pub tags: BTreeMap<String, Option<String>>,
    /// Installation name or id, or integration name; `None` picks the one installation
    /// that declares the channel.
    pub integration: Option<String>,
    /// Tag names that identify the conversation; `None` means all given tags.
    pub discriminate_by_tags: Option<Vec<String>>,
}

/// `getOrCreateUser`.
#[derive(Debug, Clone, Default)]
pub struct UserRequest {
    pub tags: BTreeMap<String, Option<String>>,
    /// Installation name or id, or integration name; `None` makes a user of the bot.
    pub integration: Option<String>,
    pub name: Option<String>,
    pub picture_url: Option<String>,
    pub discriminate_by_tags: Option<Vec<String>>,
}

/// The installation that serves `channel`, by name or as the only one declaring it.
fn channel_owner(
    plugins: &PluginHost,
    integration: Option<&str>,
    channel: &str,
) -> Result<Arc<Installation>, BotError> {
    let snapshot = plugins.registry.snapshot();
    let installation = match integration {
        Some(name) => find_installation(&snapshot, name)?,
        None => {
            let declaring: Vec<&Arc<Installation>> = snapshot
                .installations
                .values()
                .filter(|i| i.plugin.definition.channels.contains_key(channel))
                .collect();
            match declaring.as_slice() {
                [one] => (*one).clone(),
                [] => {
                    return Err(BotError::not_found(format!(
                        "no installation declares channel {channel:?}"
                    )));
                }
                several => {
                    return Err(BotError::invalid(format!(
                        "several installations declare channel {channel:?} ({}); say which with integrationName",
                        several.iter().map(|i| i.name()).collect::<Vec<_>>().join(", ")
                    )));
                }
            }
        }
    };
    if !installation.plugin.definition.channels.contains_key(channel) {
        return Err(BotError::invalid(format!(
            "integration {} has no channel {channel:?} (declared: {})",
            installation.plugin.definition.name,
            list_or_none(installation.plugin.definition.channels.keys().map(String::as_str))
        )));
    }
    Ok(installation)
}

/// The tags to look an entity up by: all of them, or the discriminating ones.
fn lookup_tags(tags: &Tags, discriminate: Option<&[String]>) -> Result<Tags, BotError> {
    if tags.is_empty() {
        return Err(BotError::invalid(
            "give at least one tag: conversations and users are found by their tags",
        ));
    }
    let Some(names) = discriminate else {
        return Ok(tags.clone());
    };
    let mut lookup = Tags::new();
    for name in names {
        let value = tags.get(name).ok_or_else(|| {
            BotError::invalid(format!(
                "discriminateByTags names tag {name:?}, which tags does not set"
            ))
        })?;
        lookup.insert(name.clone(), value.clone());
    }
    if lookup.is_empty() {
        return Err(BotError::invalid("discriminateByTags must name at least one tag"));
    }
    Ok(lookup)
}

/// The installation that owns the request's channel, and the tags given, which must be
/// ones the channel declares.
fn conversation_owner_and_tags(
    plugins: &PluginHost,
    request: &ConversationRequest,
) -> Result<(Arc<Installation>, Tags), BotError> {
    let installation = channel_owner(plugins, request.integration.as_deref(), &request.channel)?;
    let declared = &installation.plugin.definition.channels[&request.channel];
    let tags = present_tags(&request.tags);
    check_tags(
        &format!("conversations of channel {}", request.channel),
        tags.keys(),
        &declared.conversation_tags,
    )?;
    Ok((installation, tags))
}

/// The installation the requested user belongs to (`None`: a user of the bot), and the
/// tags given, which must be ones its integration declares.
fn user_owner_and_tags(plugins: &PluginHost, request: &UserRequest) -> Result<(Option<String>, Tags), BotError> {
    let tags = present_tags(&request.tags);
    let installation_id = match &request.integration {
        Some(name) => {
            let installation = find_installation(&plugins.registry.snapshot(), name)?;
            check_tags("users", tags.keys(), &installation.plugin.definition.user_tags)?;
            Some(installation.id().to_string())
        }
        None => None,
    };
    Ok((installation_id, tags))
}

/// Finds the installation's conversation in `channel` carrying `tags`, or creates it.
/// `true` when it was created.
pub async fn get_or_create_conversation(
    plugins: &PluginHost,
    request: ConversationRequest,
) -> Result<(ConversationRecord, bool), BotError> {
    let (installation, tags) = conversation_owner_and_tags(plugins, &request)?;
    let lookup = lookup_tags(&tags, request.discriminate_by_tags.as_deref())?;
    let installation_id = installation.id().to_string();
    let integration = installation.plugin.definition.name.clone();
    let channel = request.channel;
    if lookup != tags {
        let query = EntityQuery {
            installation_id: Some(installation_id.clone()),
            channel: Some(channel.clone()),
            tags: lookup,
            page: PageRequest {
                size: Some(1),
                token: None,
            },
            ..Default::default()
        };
        if let Some(found) = plugins.store.conversations(&query).await?.items.into_iter().next() {
            return Ok((found, false));
        }
    }
    Ok(plugins
        .store
        .get_or_create_conversation(&installation_id, &integration, &channel, &tags)
        .await?)
}

/// Finds the user carrying `tags`, or creates it. `true` when it was created.
pub async fn get_or_create_user(plugins: &PluginHost, request: UserRequest) -> Result<(UserRecord, bool), BotError> {
    let (installation_id, tags) = user_owner_and_tags(plugins, &request)?;
    let lookup = lookup_tags(&tags, request.discriminate_by_tags.as_deref())?;
    if lookup != tags {
        let query = EntityQuery {
            installation_id: installation_id.clone(),
            tags: lookup,
            page: PageRequest {
                size: Some(PageRequest::MAX_SIZE),
                token: None,
            },
            ..Default::default()
        };
        // Users of the bot have no installation; the query cannot ask for that.
        let found = plugins
            .store
            .users(&query)
            .await?
            .items
            .into_iter()
            .find(|u| u.installation_id == installation_id);
        if let Some(found) = found {
            return Ok((found, false));
        }
    }
    Ok(plugins
        .store
        .get_or_create_user(
            installation_id.as_deref(),
            &tags,
            request.name.as_deref(),
            request.picture_url.as_deref(),
        )
        .await?)
}

/// `createConversation`: a new conversation in `channel` whatever conversations carry the
/// same tags; the tags must be ones the channel declares.
pub async fn create_conversation(
    plugins: &PluginHost,
    request: ConversationRequest,
) -> Result<ConversationRecord, BotError> {
    let (installation, tags) = conversation_owner_and_tags(plugins, &request)?;
    let integration = installation.plugin.definition.name.clone();
    Ok(plugins
        .store
        .create_conversation(installation.id(), &integration, &request.channel, &tags)
        .await?)
}

/// A conversation the bot names, or 404.
pub async fn existing_conversation(plugins: &PluginHost, id: &str) -> Result<ConversationRecord, BotError> {
    let lookup = id.to_string();
    plugins
        .store
        .conversation(&lookup)
        .await?
        .ok_or_else(|| BotError::not_found(format!("conversation {id} does not exist")))
}

/// A user the bot names, or 404.
pub async fn existing_user(plugins: &PluginHost, id: &str) -> Result<UserRecord, BotError> {
    let lookup = id.to_string();
    plugins
        .store
        .user(&lookup)
        .await?
        .ok_or_else(|| BotError::not_found(format!("user {id} does not exist")))
}

/// The tag names being set (not removed) by `changes`.
fn set_tags(changes: &TagChanges) -> impl Iterator<Item = &String> {
    changes.iter().filter(|(_, v)| v.is_some()).map(|(k, _)| k)
}

/// `updateConversation`: changes its tags (`null` or empty removes one), which must be
/// ones its channel declares.
pub async fn update_conversation(
    plugins: &PluginHost,
    id: &str,
    tags: TagChanges,
) -> Result<ConversationRecord, BotError> {
    let conversation = existing_conversation(plugins, id).await?;
    // Rules come from the plugin that owns the conversation; when it is gone there is
    // nothing to check against.
    if let Some(installation) = plugins.registry.snapshot().by_id(&conversation.installation_id)
        && let Some(declared) = installation.plugin.definition.channels.get(&conversation.channel)
    {
        check_tags(
            &format!("conversations of channel {}", conversation.channel),
            set_tags(&tags),
            &declared.conversation_tags,
        )?;
    }
    plugins
        .store
        .update_conversation(id, &tags)
        .await?
        .ok_or_else(|| BotError::not_found(format!("conversation {id} does not exist")))
}

/// `createUser`: a new user whatever users carry the same tags; with an integration, a
/// user of its installation (tags it declares), else a user of the bot.
pub async fn create_user(plugins: &PluginHost, request: UserRequest) -> Result<UserRecord, BotError> {
    let (installation_id, tags) = user_owner_and_tags(plugins, &request)?;
    Ok(plugins
        .store
        .create_user(
            installation_id.as_deref(),
            &tags,
            request.name.as_deref(),
            request.picture_url.as_deref(),
        )
        .await?)
}

/// `updateUser`: tags (declared by the user's integration, for its users), name, picture.
pub async fn update_user(plugins: &PluginHost, id: &str, changes: UserChanges) -> Result<UserRecord, BotError> {
    let user = existing_user(plugins, id).await?;
    if let Some(owner) = &user.installation_id
        && let Some(installation) = plugins.registry.snapshot().by_id(owner)
    {
        check_tags(
            "users",
            set_tags(&changes.tags),
            &installation.plugin.definition.user_tags,
        )?;
    }
    plugins
        .store
        .update_user(id, &changes)
        .await?
        .ok_or_else(|| BotError::not_found(format!("user {id} does not exist")))
}

/// `addParticipant`: a user of the bot, or of the conversation's own installation.
pub async fn add_participant(
    plugins: &PluginHost,
    conversation_id: &str,
    user_id: &str,
) -> Result<UserRecord, BotError> {
    let conversation = existing_conversation(plugins, conversation_id).await?;
    let lookup = user_id.to_string();
    let user = plugins
        .store
        .user(&lookup)
        .await?
        .ok_or_else(|| BotError::unknown_reference(format!("user {user_id} does not exist")))?;
    if let Some(owner) = &user.installation_id
        && *owner != conversation.installation_id
    {
        return Err(BotError::new(
            BotErrorKind::RelationConflict,
            format!("user {user_id} belongs to another installation than conversation {conversation_id}"),
        ));
    }
    plugins.store.add_participant(conversation_id, user_id).await?;
    Ok(user)
}
