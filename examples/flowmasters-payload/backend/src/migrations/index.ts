import * as migration_20261202_011058_initial from './20261202_011058_initial';

export const migrations = [
  {
    up: migration_20261202_011058_initial.up,
    down: migration_20261202_011058_initial.down,
    name: '20261202_011058_initial'
  },
];
