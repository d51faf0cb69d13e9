//! SentimentService: classifies texts with the configured backend.

use crate::api::convert::{self, FieldError, Limits};
use crate::api::error::ApiError;
use crate::engine::Engine;
use crate::pb;
use crate::pb::sentiment_service_server::SentimentService;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The SentimentService implementation.
pub struct SentimentApi {
    engine: Arc<Engine>,
    limits: Limits,
    max_texts: usize,
}

impl SentimentApi {
    /// A service over `engine`, accepting at most `max_texts` texts per call.
    pub fn new(engine: Arc<Engine>, limits: Limits, max_texts: usize) -> Self {
        Self {
            engine,
            limits,
            max_texts,
        }
    }

    async fn classify(
        &self,
        request: pb::ClassifyRequest,
    ) -> Result<pb::ClassifyResponse, ApiError> {
        let pb::ClassifyRequest { texts } = request;
        if texts.len() > self.max_texts {
            return Err(FieldError::new(
                "texts",
                format!(
                    "{} texts in one call, at most {} allowed",
                    texts.len(),
                    self.max_texts
                ),
            )
            .into());
        }
        for (index, text) in texts.iter().enumerate() {
            convert::check_text("texts", text, &self.limits)
                .map_err(|error| error.at_index(index))?;
        }
        let results = self
            .engine
            .classify(&texts)
            .await?
            .iter()
            .zip(&texts)
            .map(|(sentiment, text)| {
                convert::sentiment_to_pb(
                    sentiment,
                    convert::TextReading {
                        language: self.engine.language.detect(text),
                        intent: None,
                        urgency_cues: crate::sentiment::infer_urgency_cues(text),
                    },
                )
            })
            .collect();
        Ok(pb::ClassifyResponse { results })
    }
}

#[tonic::async_trait]
impl SentimentService for Arc<SentimentApi> {
    async fn classify(
        &self,
        request: Request<pb::ClassifyRequest>,
    ) -> Result<Response<pb::ClassifyResponse>, Status> {
        SentimentApi::classify(self, request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }
}
