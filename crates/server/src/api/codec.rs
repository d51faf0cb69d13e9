//! The protobuf codec every rapport service and client is generated with: prost's, except that a
//! request that does not decode (invalid UTF-8 in a string field, a truncated or malformed message)
//! is the caller's error, INVALID_ARGUMENT, rather than tonic's default INTERNAL. prost's message
//! names the field (`Interaction.customer_id: invalid string value: data is not UTF-8 encoded`).

use std::marker::PhantomData;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, ProstCodec};
use tonic::Status;

/// [`ProstCodec`] with decode errors answered as INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct ValidatingCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ValidatingCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for ValidatingCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = ValidatingDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ValidatingDecoder(ProstCodec::<(), U>::default().decoder())
    }
}

/// prost's decoder with its errors remapped to INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct ValidatingDecoder<U: prost::Message + Default + Send + 'static>(
    <ProstCodec<(), U> as Codec>::Decoder,
);

impl<U: prost::Message + Default + Send + 'static> Decoder for ValidatingDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|status| {
            crate::api::error::ApiError::InvalidArgument(format!(
                "undecodable message: {}",
                status.message()
            ))
            .into()
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
