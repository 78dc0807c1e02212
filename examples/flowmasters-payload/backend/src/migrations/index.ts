import * as migration_20261202_011058_initial from './20261202_011058_initial';
import * as migration_20261202_044906_media_storage_fields from './20261202_044906_media_storage_fields';

export const migrations = [
  {
    up: migration_20261202_011058_initial.up,
    down: migration_20261202_011058_initial.down,
    name: '20261202_011058_initial',
  },
  {
    up: migration_20261202_044906_media_storage_fields.up,
    down: migration_20261202_044906_media_storage_fields.down,
    name: '20261202_044906_media_storage_fields'
  },
];
