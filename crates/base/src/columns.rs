//! The domain's ids as sea-orm column values, so entities hold them and queries take them;
//! what the `DeriveValueType` derive would generate for an `i64` newtype, written by hand so
//! that `domain` stays free of the ORM: only the store turns on the `sea-orm` feature, and an
//! impl of sea-orm's traits must live beside the type or the trait.

use sea_orm::sea_query::{ArrayType, ColumnType, Nullable, ValueType, ValueTypeErr};
use sea_orm::{ColIdx, DbErr, QueryResult, TryFromU64, TryGetError, TryGetable, Value};

use crate::domain::ids::{ApiKeyId, NamespaceId, NodeId, OrgId, PreauthKeyId};

macro_rules! id_column {
    ($($name:ident),*) => {$(
        impl From<$name> for Value {
            fn from(id: $name) -> Self {
                id.get().into()
            }
        }

        impl TryGetable for $name {
            fn try_get_by<I: ColIdx>(res: &QueryResult, index: I) -> Result<Self, TryGetError> {
                i64::try_get_by(res, index).map($name::new)
            }
        }

        impl ValueType for $name {
            fn try_from(v: Value) -> Result<Self, ValueTypeErr> {
                <i64 as ValueType>::try_from(v).map($name::new)
            }
            fn type_name() -> String {
                stringify!($name).to_owned()
            }
            fn array_type() -> ArrayType {
                ArrayType::BigInt
            }
            fn column_type() -> ColumnType {
                ColumnType::BigInteger
            }
        }

        impl Nullable for $name {
            fn null() -> Value {
                <i64 as Nullable>::null()
            }
        }

        impl sea_orm::IntoActiveValue<$name> for $name {
            fn into_active_value(self) -> sea_orm::ActiveValue<$name> {
                sea_orm::ActiveValue::Set(self)
            }
        }

        impl TryFromU64 for $name {
            fn try_from_u64(n: u64) -> Result<Self, DbErr> {
                i64::try_from_u64(n).map($name::new)
            }
        }
    )*};
}

id_column!(NodeId, NamespaceId, OrgId, ApiKeyId, PreauthKeyId);
